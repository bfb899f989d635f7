//! Redis commands: what replaying them does, and their arguments.
//!
//! The classification decides what happens to a request that was sent but not answered
//! when its PE failed (the backend may or may not have executed it):
//! - [`CommandClass::ReadOnly`]: no effect on data; always replayed.
//! - [`CommandClass::Idempotent`]: executing it twice leaves the same data as once (its
//!   reply may differ, e.g. `HSET` counts new fields); always replayed.
//! - [`CommandClass::NonIdempotent`]: everything else, including every command not listed
//!   here (`INCR`, `LPUSH`, `EVAL`, `EXEC`, ...): replayed only when the pool chose
//!   at-least-once, otherwise answered with a `-ERR poolgate: ...` error.

/// What replaying a command does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommandClass {
    /// Reads only.
    ReadOnly,
    /// Writes, but twice is the same as once.
    Idempotent,
    /// Twice may differ from once (or unknown).
    NonIdempotent,
}

/// Commands that do not change data (replies to some, like `RANDOMKEY`, vary anyway).
const READ_ONLY: &[&str] = &[
    "BITCOUNT",
    "BITFIELD_RO",
    "BITPOS",
    "COMMAND",
    "DBSIZE",
    "DUMP",
    "ECHO",
    "EVALSHA_RO",
    "EVAL_RO",
    "EXISTS",
    "EXPIRETIME",
    "FCALL_RO",
    "GEODIST",
    "GEOHASH",
    "GEOPOS",
    "GEORADIUSBYMEMBER_RO",
    "GEORADIUS_RO",
    "GEOSEARCH",
    "GET",
    "GETBIT",
    "GETRANGE",
    "HEXISTS",
    "HGET",
    "HGETALL",
    "HKEYS",
    "HLEN",
    "HMGET",
    "HRANDFIELD",
    "HSCAN",
    "HSTRLEN",
    "HVALS",
    "INFO",
    "KEYS",
    "LASTSAVE",
    "LCS",
    "LINDEX",
    "LLEN",
    "LOLWUT",
    "LPOS",
    "LRANGE",
    "MGET",
    "PEXPIRETIME",
    "PFCOUNT",
    "PING",
    "PTTL",
    "RANDOMKEY",
    "SCAN",
    "SCARD",
    "SDIFF",
    "SINTER",
    "SINTERCARD",
    "SISMEMBER",
    "SMEMBERS",
    "SMISMEMBER",
    "SORT_RO",
    "SRANDMEMBER",
    "SSCAN",
    "STRLEN",
    "SUBSTR",
    "SUNION",
    "TIME",
    "TOUCH",
    "TTL",
    "TYPE",
    "XINFO",
    "XLEN",
    "XPENDING",
    "XRANGE",
    "XREAD",
    "XREVRANGE",
    "ZCARD",
    "ZCOUNT",
    "ZDIFF",
    "ZINTER",
    "ZINTERCARD",
    "ZLEXCOUNT",
    "ZMSCORE",
    "ZRANDMEMBER",
    "ZRANGE",
    "ZRANGEBYLEX",
    "ZRANGEBYSCORE",
    "ZRANK",
    "ZREVRANGE",
    "ZREVRANGEBYLEX",
    "ZREVRANGEBYSCORE",
    "ZREVRANK",
    "ZSCAN",
    "ZSCORE",
    "ZUNION",
];

/// Writes whose second execution changes nothing (absolute values, set membership,
/// deletions), plus the session prelude commands.
const IDEMPOTENT: &[&str] = &[
    "AUTH",
    "DEL",
    "EXPIREAT",
    "FLUSHALL",
    "FLUSHDB",
    "GEOADD",
    "HDEL",
    "HELLO",
    "HMSET",
    "HSET",
    "HSETNX",
    "LSET",
    "MSET",
    "MSETNX",
    "PERSIST",
    "PEXPIREAT",
    "PFADD",
    "PSETEX",
    "SADD",
    "SELECT",
    "SET",
    "SETBIT",
    "SETEX",
    "SETNX",
    "SETRANGE",
    "SREM",
    "UNLINK",
    "ZADD",
    "ZREM",
];

/// Classifies a request by its (uppercased) name and, when known, its arguments
/// (`args[0]` is the name).
pub fn classify(name: &[u8], args: Option<&[Vec<u8>]>) -> CommandClass {
    let arg = |i: usize| args.and_then(|a| a.get(i)).map(|a| a.to_ascii_uppercase());
    let has =
        |word: &[u8]| args.is_some_and(|a| a.iter().skip(1).any(|x| x.eq_ignore_ascii_case(word)));
    match name {
        // ZADD ... INCR adds to a score.
        b"ZADD" if has(b"INCR") => CommandClass::NonIdempotent,
        b"CLIENT" => match arg(1).as_deref() {
            Some(b"GETNAME" | b"ID" | b"INFO" | b"LIST") => CommandClass::ReadOnly,
            Some(b"SETNAME") => CommandClass::Idempotent,
            _ => CommandClass::NonIdempotent,
        },
        _ => {
            let Ok(name) = std::str::from_utf8(name) else {
                return CommandClass::NonIdempotent;
            };
            if READ_ONLY.binary_search(&name).is_ok() {
                CommandClass::ReadOnly
            } else if IDEMPOTENT.binary_search(&name).is_ok() {
                CommandClass::Idempotent
            } else {
                CommandClass::NonIdempotent
            }
        }
    }
}

/// Arguments of one complete request (array of bulk strings or inline line); `None` when
/// the bytes are not exactly one such request or have more than `max_args` arguments.
pub fn parse_args(raw: &[u8], max_args: usize) -> Option<Vec<Vec<u8>>> {
    let Some(rest) = raw.strip_prefix(b"*") else {
        let line = raw.strip_suffix(b"\n")?;
        if line.contains(&b'\n') {
            return None;
        }
        let words = super::scanner::inline_words(line);
        return (words.len() <= max_args).then(|| words.into_iter().map(<[u8]>::to_vec).collect());
    };
    let (count, mut rest) = number_line(rest)?;
    if count > max_args as u64 {
        return None;
    }
    let mut args = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let (len, after) = number_line(rest.strip_prefix(b"$")?)?;
        let len = usize::try_from(len).ok()?;
        if after.len() < len.checked_add(2)? || &after[len..len + 2] != b"\r\n" {
            return None;
        }
        args.push(after[..len].to_vec());
        rest = &after[len + 2..];
    }
    rest.is_empty().then_some(args)
}

/// A non-negative decimal followed by CRLF; the number and what follows.
fn number_line(b: &[u8]) -> Option<(u64, &[u8])> {
    let end = b.iter().position(|&c| c == b'\r')?;
    if end == 0 || end > 19 || b.get(end + 1) != Some(&b'\n') {
        return None;
    }
    let n = std::str::from_utf8(&b[..end]).ok()?.parse().ok()?;
    Some((n, &b[end + 2..]))
}

/// Encodes a command as a RESP array of bulk strings.
pub fn encode_command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_sorted_for_binary_search() {
        assert!(READ_ONLY.windows(2).all(|w| w[0] < w[1]));
        assert!(IDEMPOTENT.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn classes() {
        assert_eq!(classify(b"GET", None), CommandClass::ReadOnly);
        assert_eq!(classify(b"MGET", None), CommandClass::ReadOnly);
        assert_eq!(classify(b"SET", None), CommandClass::Idempotent);
        assert_eq!(classify(b"INCR", None), CommandClass::NonIdempotent);
        assert_eq!(classify(b"LPUSH", None), CommandClass::NonIdempotent);
        assert_eq!(classify(b"NOSUCHCMD", None), CommandClass::NonIdempotent);
        let zadd = vec![
            b"ZADD".to_vec(),
            b"k".to_vec(),
            b"incr".to_vec(),
            b"1".to_vec(),
        ];
        assert_eq!(classify(b"ZADD", Some(&zadd)), CommandClass::NonIdempotent);
        let setname = vec![b"CLIENT".to_vec(), b"setname".to_vec(), b"x".to_vec()];
        assert_eq!(
            classify(b"CLIENT", Some(&setname)),
            CommandClass::Idempotent
        );
        assert_eq!(classify(b"CLIENT", None), CommandClass::NonIdempotent);
    }

    #[test]
    fn args_round_trip_and_reject_garbage() {
        let raw = encode_command(&[b"SET", b"k", b"v\r\n"]);
        assert_eq!(
            parse_args(&raw, 8).unwrap(),
            vec![b"SET".to_vec(), b"k".to_vec(), b"v\r\n".to_vec()]
        );
        assert_eq!(
            parse_args(b"auth  pw\r\n", 8).unwrap(),
            vec![b"auth".to_vec(), b"pw".to_vec()]
        );
        assert!(parse_args(&raw, 2).is_none());
        assert!(parse_args(b"*1\r\n$5\r\nab\r\n", 8).is_none());
        assert!(parse_args(b"*1\r\n$2\r\nab\r\nextra", 8).is_none());
        assert!(parse_args(b"*99999999999999999999\r\n", 8).is_none());
    }
}
