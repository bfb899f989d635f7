//! RESP framer: examples of every type, limits, and property/fuzz tests.

use poolgate_plugins::resp::{Direction, Frame, FrameKind, RespError, RespLimits, RespScanner};
use proptest::prelude::*;

/// Scans `chunks` in order; frames with their end offsets, or the first error.
fn scan(
    dir: Direction,
    limits: RespLimits,
    chunks: &[&[u8]],
) -> Result<Vec<(Frame, usize)>, RespError> {
    let mut s = RespScanner::new(dir, limits);
    let mut frames = Vec::new();
    let mut offset = 0;
    for chunk in chunks {
        let mut pos = 0;
        while pos < chunk.len() {
            let adv = s.advance(&chunk[pos..])?;
            assert!(adv.consumed <= chunk.len() - pos);
            assert!(s.buffered() <= limits.max_line_len);
            assert!(s.depth() <= limits.max_depth);
            pos += adv.consumed;
            if let Some(f) = adv.frame {
                frames.push((f, offset + pos));
            }
        }
        offset += chunk.len();
    }
    Ok(frames)
}

fn replies(bytes: &[u8]) -> Result<Vec<(FrameKind, u64)>, RespError> {
    Ok(scan(Direction::Reply, RespLimits::default(), &[bytes])?
        .into_iter()
        .map(|(f, _)| (f.kind, f.len))
        .collect())
}

#[test]
fn every_reply_type() {
    let cases: &[(&[u8], FrameKind)] = &[
        (b"+OK\r\n", FrameKind::SimpleString),
        (b"-ERR no\r\n", FrameKind::Error),
        (b":-42\r\n", FrameKind::Integer),
        (b"$5\r\nhello\r\n", FrameKind::Bulk),
        (b"$0\r\n\r\n", FrameKind::Bulk),
        (b"$-1\r\n", FrameKind::Bulk),
        (b"*-1\r\n", FrameKind::Array),
        (b"!10\r\nSYNTAX bad\r\n", FrameKind::BulkError),
        (b"=15\r\ntxt:Some string\r\n", FrameKind::Verbatim),
        (b"_\r\n", FrameKind::Null),
        (b",3.14\r\n", FrameKind::Double),
        (b",-inf\r\n", FrameKind::Double),
        (b",nan\r\n", FrameKind::Double),
        (b"#t\r\n", FrameKind::Boolean),
        (
            b"(3492890328409238509324850943850943825024385\r\n",
            FrameKind::BigNumber,
        ),
        (b"*2\r\n:1\r\n*1\r\n+x\r\n", FrameKind::Array),
        (b"%2\r\n+a\r\n:1\r\n+b\r\n%0\r\n", FrameKind::Map),
        (b"~2\r\n+a\r\n#f\r\n", FrameKind::Set),
        (b">3\r\n+message\r\n+ch\r\n$2\r\nhi\r\n", FrameKind::Push),
        (b"|1\r\n+ttl\r\n:3600\r\n$2\r\nok\r\n", FrameKind::Bulk),
        (b"*2\r\n|1\r\n+a\r\n+b\r\n:1\r\n:2\r\n", FrameKind::Array),
        (b"$?\r\n;4\r\nHell\r\n;1\r\no\r\n;0\r\n", FrameKind::Bulk),
        (b"*?\r\n:1\r\n$1\r\na\r\n.\r\n", FrameKind::Array),
        (b"%?\r\n+a\r\n:1\r\n.\r\n", FrameKind::Map),
    ];
    for (bytes, kind) in cases {
        let got =
            replies(bytes).unwrap_or_else(|e| panic!("{:?}: {e}", String::from_utf8_lossy(bytes)));
        assert_eq!(
            got,
            vec![(*kind, bytes.len() as u64)],
            "{}",
            String::from_utf8_lossy(bytes)
        );
    }
}

#[test]
fn pipelined_replies_are_separate_frames() {
    let got = replies(b"+OK\r\n:1\r\n>2\r\n+invalidate\r\n*0\r\n$1\r\nx\r\n").unwrap();
    let kinds: Vec<_> = got.iter().map(|g| g.0).collect();
    assert_eq!(
        kinds,
        [
            FrameKind::SimpleString,
            FrameKind::Integer,
            FrameKind::Push,
            FrameKind::Bulk
        ]
    );
}

#[test]
fn malformed_replies_have_typed_errors() {
    let cases: &[(&[u8], RespError)] = &[
        (b"?x\r\n", RespError::InvalidType(b'?')),
        (b"+OK\n", RespError::ExpectedCrlf),
        (b"+OK\rx", RespError::ExpectedCrlf),
        (b"$3\r\nabcd\r\n", RespError::ExpectedCrlf),
        (b"$x\r\n", RespError::InvalidLength),
        (b"$-2\r\n", RespError::InvalidLength),
        (b"*+1\r\n", RespError::InvalidLength),
        (b":1.5\r\n", RespError::InvalidValue("integer")),
        (b"#x\r\n", RespError::InvalidValue("boolean")),
        (b",abc\r\n", RespError::InvalidValue("double")),
        (b"(12a\r\n", RespError::InvalidValue("big number")),
        (b"_x\r\n", RespError::InvalidValue("null")),
        (b".\r\n", RespError::InvalidType(b'.')),
        (b"*1\r\n.\r\n", RespError::InvalidType(b'.')),
        (b"$?\r\n+x\r\n", RespError::InvalidType(b'+')),
    ];
    for (bytes, err) in cases {
        assert_eq!(
            replies(bytes).unwrap_err(),
            *err,
            "{}",
            String::from_utf8_lossy(bytes)
        );
    }
}

#[test]
fn limits_are_enforced() {
    let limits = RespLimits {
        max_bulk_len: 10,
        max_depth: 3,
        max_elements: 4,
        max_line_len: 16,
    };
    let run = |b: &[u8]| scan(Direction::Reply, limits, &[b]).map(|f| f.len());
    assert_eq!(run(b"$10\r\n0123456789\r\n").unwrap(), 1);
    assert_eq!(
        run(b"$11\r\n").unwrap_err(),
        RespError::BulkTooLarge { len: 11, max: 10 }
    );
    let big = scan(
        Direction::Reply,
        RespLimits::default(),
        &[b"$99999999999999999999\r\n"],
    );
    assert_eq!(big.unwrap_err(), RespError::InvalidLength);
    assert_eq!(run(b"*1\r\n*1\r\n*1\r\n:1\r\n").unwrap(), 1);
    assert_eq!(
        run(b"*1\r\n*1\r\n*1\r\n*1\r\n").unwrap_err(),
        RespError::TooDeep { max: 3 }
    );
    assert_eq!(
        run(b"*5\r\n").unwrap_err(),
        RespError::TooManyElements { count: 5, max: 4 }
    );
    assert_eq!(
        run(b"%3\r\n").unwrap_err(),
        RespError::TooManyElements { count: 3, max: 4 }
    );
    assert_eq!(
        run(b"+0123456789abcdefg\r\n").unwrap_err(),
        RespError::LineTooLong { max: 16 }
    );
    assert_eq!(
        run(b"*5").unwrap(),
        0,
        "incomplete header is not an error yet"
    );
    // Errors are sticky.
    let mut s = RespScanner::new(Direction::Reply, limits);
    assert!(s.advance(b"?").is_err());
    assert!(s.advance(b"+OK\r\n").is_err());
    s.reset();
    assert!(s.advance(b"+OK\r\n").unwrap().frame.is_some());
}

#[test]
fn requests_arrays_and_inline() {
    let bytes: &[u8] =
        b"*3\r\n$3\r\nset\r\n$1\r\nk\r\n$1\r\nv\r\nget  k\r\n\r\n\n*0\r\n*-1\r\nPING\n";
    let frames = scan(Direction::Request, RespLimits::default(), &[bytes]).unwrap();
    let got: Vec<_> = frames
        .iter()
        .map(|(f, _)| (f.kind, f.args, f.command.clone()))
        .collect();
    assert_eq!(
        got,
        vec![
            (FrameKind::Array, 3, b"SET".to_vec()),
            (FrameKind::Inline, 2, b"GET".to_vec()),
            (FrameKind::Inline, 0, vec![]),
            (FrameKind::Inline, 0, vec![]),
            (FrameKind::Array, 0, vec![]),
            (FrameKind::Array, 0, vec![]),
            (FrameKind::Inline, 1, b"PING".to_vec()),
        ]
    );
    assert_eq!(frames.last().unwrap().1, bytes.len());
}

#[test]
fn requests_reject_reply_only_syntax() {
    let run = |b: &[u8]| scan(Direction::Request, RespLimits::default(), &[b]).map(|f| f.len());
    assert_eq!(
        run(b"*1\r\n:1\r\n").unwrap_err(),
        RespError::InvalidType(b':')
    );
    assert_eq!(
        run(b"*1\r\n*1\r\n").unwrap_err(),
        RespError::InvalidType(b'*')
    );
    assert_eq!(run(b"*1\r\n$-1\r\n").unwrap_err(), RespError::InvalidLength);
    assert_eq!(run(b"*?\r\n").unwrap_err(), RespError::InvalidLength);
    let long = vec![b'a'; 70 * 1024];
    assert_eq!(
        run(&long).unwrap_err(),
        RespError::LineTooLong { max: 64 * 1024 }
    );
}

#[test]
fn command_capture_is_bounded_and_uppercased() {
    let name = vec![b'x'; 100];
    let mut req = format!("*1\r\n${}\r\n", name.len()).into_bytes();
    req.extend_from_slice(&name);
    req.extend_from_slice(b"\r\n");
    let frames = scan(Direction::Request, RespLimits::default(), &[&req]).unwrap();
    assert_eq!(frames[0].0.command, vec![b'X'; 32]);
}

/// A RESP value, for generating valid streams.
#[derive(Clone, Debug)]
enum V {
    Simple(String),
    Err(String),
    Int(i64),
    Bulk(Vec<u8>),
    NullBulk,
    BulkErr(Vec<u8>),
    Verbatim(Vec<u8>),
    Null,
    Double(f64),
    Bool(bool),
    Big(String),
    Array(Vec<V>),
    NullArray,
    Map(Vec<(V, V)>),
    Set(Vec<V>),
    Push(Vec<V>),
    Attr(Vec<(V, V)>, Box<V>),
    StreamStr(Vec<Vec<u8>>),
    StreamArr(Vec<V>),
}

fn enc(v: &V, out: &mut Vec<u8>) {
    let agg = |out: &mut Vec<u8>, t: char, items: &[V]| {
        out.extend_from_slice(format!("{t}{}\r\n", items.len()).as_bytes());
        items.iter().for_each(|i| enc(i, out));
    };
    let pairs = |out: &mut Vec<u8>, t: char, items: &[(V, V)]| {
        out.extend_from_slice(format!("{t}{}\r\n", items.len()).as_bytes());
        for (k, v) in items {
            enc(k, out);
            enc(v, out);
        }
    };
    let bulk = |out: &mut Vec<u8>, t: char, b: &[u8]| {
        out.extend_from_slice(format!("{t}{}\r\n", b.len()).as_bytes());
        out.extend_from_slice(b);
        out.extend_from_slice(b"\r\n");
    };
    match v {
        V::Simple(s) => out.extend_from_slice(format!("+{s}\r\n").as_bytes()),
        V::Err(s) => out.extend_from_slice(format!("-{s}\r\n").as_bytes()),
        V::Int(i) => out.extend_from_slice(format!(":{i}\r\n").as_bytes()),
        V::Bulk(b) => bulk(out, '$', b),
        V::NullBulk => out.extend_from_slice(b"$-1\r\n"),
        V::BulkErr(b) => bulk(out, '!', b),
        V::Verbatim(b) => bulk(out, '=', &[b"txt:".as_slice(), b].concat()),
        V::Null => out.extend_from_slice(b"_\r\n"),
        V::Double(d) => out.extend_from_slice(format!(",{d}\r\n").as_bytes()),
        V::Bool(b) => out.extend_from_slice(if *b { b"#t\r\n" } else { b"#f\r\n" }),
        V::Big(s) => out.extend_from_slice(format!("({s}\r\n").as_bytes()),
        V::Array(items) => agg(out, '*', items),
        V::NullArray => out.extend_from_slice(b"*-1\r\n"),
        V::Map(items) => pairs(out, '%', items),
        V::Set(items) => agg(out, '~', items),
        V::Push(items) => agg(out, '>', items),
        V::Attr(items, inner) => {
            pairs(out, '|', items);
            enc(inner, out);
        }
        V::StreamStr(chunks) => {
            out.extend_from_slice(b"$?\r\n");
            for c in chunks {
                bulk(out, ';', c);
            }
            out.extend_from_slice(b";0\r\n");
        }
        V::StreamArr(items) => {
            out.extend_from_slice(b"*?\r\n");
            items.iter().for_each(|i| enc(i, out));
            out.extend_from_slice(b".\r\n");
        }
    }
}

fn kind(v: &V) -> FrameKind {
    match v {
        V::Simple(_) => FrameKind::SimpleString,
        V::Err(_) => FrameKind::Error,
        V::Int(_) => FrameKind::Integer,
        V::Bulk(_) | V::NullBulk | V::StreamStr(_) => FrameKind::Bulk,
        V::BulkErr(_) => FrameKind::BulkError,
        V::Verbatim(_) => FrameKind::Verbatim,
        V::Null => FrameKind::Null,
        V::Double(_) => FrameKind::Double,
        V::Bool(_) => FrameKind::Boolean,
        V::Big(_) => FrameKind::BigNumber,
        V::Array(_) | V::NullArray | V::StreamArr(_) => FrameKind::Array,
        V::Map(_) => FrameKind::Map,
        V::Set(_) => FrameKind::Set,
        V::Push(_) => FrameKind::Push,
        V::Attr(_, inner) => kind(inner),
    }
}

fn arb_value() -> impl Strategy<Value = V> {
    let bytes = || proptest::collection::vec(any::<u8>(), 0..40);
    let leaf = prop_oneof![
        "[a-zA-Z0-9 ]{0,20}".prop_map(V::Simple),
        "[A-Z]{1,8} [a-z ]{0,20}".prop_map(V::Err),
        any::<i64>().prop_map(V::Int),
        bytes().prop_map(V::Bulk),
        Just(V::NullBulk),
        bytes().prop_map(V::BulkErr),
        bytes().prop_map(V::Verbatim),
        Just(V::Null),
        any::<f64>().prop_map(V::Double),
        any::<bool>().prop_map(V::Bool),
        "-?[0-9]{1,60}".prop_map(V::Big),
        Just(V::NullArray),
        proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..10), 0..4)
            .prop_map(V::StreamStr),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        let items = proptest::collection::vec(inner.clone(), 0..6);
        let pairs = proptest::collection::vec((inner.clone(), inner.clone()), 0..3);
        prop_oneof![
            items.clone().prop_map(V::Array),
            pairs.clone().prop_map(V::Map),
            items.clone().prop_map(V::Set),
            items.clone().prop_map(V::Push),
            (pairs, inner).prop_map(|(p, v)| V::Attr(p, Box::new(v))),
            items.prop_map(V::StreamArr),
        ]
    })
}

/// Splits `bytes` at the given (sorted, deduplicated) cut points.
fn split<'a>(bytes: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    points.sort_unstable();
    points.dedup();
    let mut out = Vec::new();
    let mut last = 0;
    for p in points {
        out.push(&bytes[last..p]);
        last = p;
    }
    out.push(&bytes[last..]);
    out
}

fn arb_command() -> impl Strategy<Value = Vec<Vec<u8>>> {
    proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..20), 1..5)
}

fn enc_command(args: &[Vec<u8>]) -> Vec<u8> {
    let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
    poolgate_plugins::resp::encode_command(&refs)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn valid_replies_frame_exactly(values in proptest::collection::vec(arb_value(), 1..6), cuts in proptest::collection::vec(any::<usize>(), 0..8)) {
        let mut bytes = Vec::new();
        let mut ends = Vec::new();
        for v in &values {
            enc(v, &mut bytes);
            ends.push(bytes.len());
        }
        let whole = scan(Direction::Reply, RespLimits::default(), &[&bytes]).unwrap();
        prop_assert_eq!(whole.len(), values.len());
        for ((f, end), (v, want_end)) in whole.iter().zip(values.iter().zip(&ends)) {
            prop_assert_eq!(f.kind, kind(v));
            prop_assert_eq!(end, want_end);
        }
        let pieces = split(&bytes, &cuts);
        let chunked = scan(Direction::Reply, RespLimits::default(), &pieces).unwrap();
        prop_assert_eq!(chunked, whole);
    }

    #[test]
    fn requests_split_anywhere_frame_the_same(cmds in proptest::collection::vec(arb_command(), 1..6), cuts in proptest::collection::vec(any::<usize>(), 0..8)) {
        let bytes: Vec<u8> = cmds.iter().flat_map(|c| enc_command(c)).collect();
        let whole = scan(Direction::Request, RespLimits::default(), &[&bytes]).unwrap();
        prop_assert_eq!(whole.len(), cmds.len());
        for ((f, _), c) in whole.iter().zip(&cmds) {
            prop_assert_eq!(f.args, c.len() as u64);
            let want: Vec<u8> = c[0].iter().take(32).map(u8::to_ascii_uppercase).collect();
            prop_assert_eq!(&f.command, &want);
        }
        let chunked = scan(Direction::Request, RespLimits::default(), &split(&bytes, &cuts)).unwrap();
        prop_assert_eq!(chunked, whole);
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_stay_bounded(bytes in proptest::collection::vec(any::<u8>(), 0..512), cuts in proptest::collection::vec(any::<usize>(), 0..6)) {
        let limits = RespLimits { max_bulk_len: 64, max_depth: 4, max_elements: 8, max_line_len: 32 };
        for dir in [Direction::Reply, Direction::Request] {
            let whole = scan(dir, limits, &[&bytes]);
            let chunked = scan(dir, limits, &split(&bytes, &cuts));
            // Chunking never changes the outcome.
            prop_assert_eq!(whole, chunked);
        }
    }

    #[test]
    fn fuzz_mutated_streams(values in proptest::collection::vec(arb_value(), 1..4), muts in proptest::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 1..6), cuts in proptest::collection::vec(any::<usize>(), 0..6)) {
        let mut bytes = Vec::new();
        values.iter().for_each(|v| enc(v, &mut bytes));
        for (at, b, op) in muts {
            let i = at % (bytes.len() + 1);
            match op {
                0 if i < bytes.len() => bytes[i] = b,
                1 => bytes.insert(i, b),
                _ if i < bytes.len() => { bytes.remove(i); }
                _ => {}
            }
        }
        let limits = RespLimits { max_bulk_len: 1 << 16, max_depth: 8, max_elements: 64, max_line_len: 128 };
        for dir in [Direction::Reply, Direction::Request] {
            let whole = scan(dir, limits, &[&bytes]);
            if let Ok(frames) = &whole {
                // Frames tile a prefix of the input.
                let mut sum = 0;
                for (f, end) in frames {
                    sum += f.len as usize;
                    prop_assert_eq!(sum, *end);
                }
            }
            prop_assert_eq!(whole, scan(dir, limits, &split(&bytes, &cuts)));
        }
    }
}

#[test]
fn streamed_aggregates_are_bounded_too() {
    let limits = RespLimits {
        max_elements: 2,
        ..RespLimits::default()
    };
    let ok = scan(Direction::Reply, limits, &[b"*?\r\n:1\r\n:2\r\n.\r\n"]).unwrap();
    assert_eq!(ok.len(), 1);
    let err = scan(Direction::Reply, limits, &[b"*?\r\n:1\r\n:2\r\n:3\r\n"]).unwrap_err();
    assert_eq!(err, RespError::TooManyElements { count: 3, max: 2 });
}
