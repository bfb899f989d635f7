//! RESP session bookkeeping: pipelining, prelude checkpoints, restore and failover.

use pool_core::cookie::{replace_public, KeyRing};
use pool_core::types::PoolHandle;
use poolgate_plugins::resp::session::NOT_REPLAYED_ERROR;
use poolgate_plugins::resp::{encode_command, NonIdempotent, RespConfig, RespSession};
use poolgate_plugins::{
    render, Delivery, Failover, NotResumable, PartialReply, PluginError, PublicState, Resume,
    SessionState,
};
use proptest::prelude::*;
use rand::SeedableRng;

fn cmd(args: &[&str]) -> Vec<u8> {
    let refs: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    encode_command(&refs)
}

/// Feeds backend bytes; returns what the client receives.
fn reply(s: &mut dyn SessionState, bytes: &[u8]) -> Vec<u8> {
    let mut d = Vec::new();
    let p = s.on_backend_bytes(bytes, &mut d);
    assert_eq!(p.error, None, "unexpected plugin error");
    render(bytes, &d)
}

fn resume(f: Failover) -> Resume {
    match f {
        Failover::Resume(r) => r,
        Failover::NotResumable(n) => panic!("expected resume, got {n:?}"),
    }
}

fn not_resumable(f: Failover) -> NotResumable {
    match f {
        Failover::NotResumable(n) => n,
        Failover::Resume(r) => panic!("expected not resumable, got {r:?}"),
    }
}

#[test]
fn pipelined_requests_replay_unanswered_and_fail_non_idempotent() {
    let mut s = RespSession::new(RespConfig::default());
    let reqs = [
        cmd(&["GET", "a"]),
        cmd(&["INCR", "n"]),
        cmd(&["SET", "b", "1"]),
        cmd(&["LPUSH", "l", "x"]),
    ];
    let all: Vec<u8> = reqs.concat();
    assert_eq!(s.on_client_bytes(&all).requests, 4);
    assert_eq!(reply(&mut s, b"$1\r\nA\r\n"), b"$1\r\nA\r\n");
    assert_eq!(s.public_state().answered, 1);

    let r = resume(s.failover());
    // INCR is at the front: answered at once; SET replayed; LPUSH failed after SET's reply.
    assert_eq!(r.to_client, NOT_REPLAYED_ERROR);
    assert_eq!(r.replay, reqs[2]);
    assert_eq!((r.replayed_requests, r.failed_requests), (1, 2));
    assert!(NOT_REPLAYED_ERROR.starts_with(b"-ERR poolgate: "));
    assert_eq!(s.public_state().answered, 2);

    let out = reply(&mut s, b"+OK\r\n");
    assert_eq!(out, [b"+OK\r\n".as_slice(), NOT_REPLAYED_ERROR].concat());
    assert_eq!(s.public_state().answered, 4);
    assert_eq!(s.unanswered(), 0);
}

#[test]
fn at_least_once_replays_everything_in_order() {
    let cfg = RespConfig {
        non_idempotent: NonIdempotent::Replay,
        ..RespConfig::default()
    };
    let mut s = RespSession::new(cfg);
    let reqs = [cmd(&["INCR", "n"]), cmd(&["GET", "a"])];
    s.on_client_bytes(&reqs.concat());
    let r = resume(s.failover());
    assert_eq!(r.replay, reqs.concat());
    assert!(r.to_client.is_empty());
    assert_eq!(reply(&mut s, b":1\r\n$-1\r\n"), b":1\r\n$-1\r\n");
    assert_eq!(s.public_state().answered, 2);
}

#[test]
fn incomplete_request_is_replayed_even_if_non_idempotent() {
    let mut s = RespSession::new(RespConfig::default());
    let incr = cmd(&["INCR", "counter"]);
    let (head, tail) = incr.split_at(10);
    s.on_client_bytes(head);
    let r = resume(s.failover());
    assert_eq!(r.replay, head);
    assert_eq!(r.replayed_requests, 0);
    // The client finishes the request on the new PE.
    assert_eq!(s.on_client_bytes(tail).requests, 1);
    assert_eq!(reply(&mut s, b":7\r\n"), b":7\r\n");
    assert_eq!(s.public_state().answered, 1);
}

#[test]
fn partial_reply_aborts_by_default_and_skips_when_asked() {
    let mut s = RespSession::new(RespConfig::default());
    s.on_client_bytes(&cmd(&["GET", "big"]));
    assert_eq!(reply(&mut s, b"$10\r\n01234"), b"$10\r\n01234");
    assert_eq!(not_resumable(s.failover()), NotResumable::PartialReply);

    let cfg = RespConfig {
        partial_reply: PartialReply::Skip,
        ..RespConfig::default()
    };
    let mut s = RespSession::new(cfg.clone());
    s.on_client_bytes(&cmd(&["GET", "big"]));
    reply(&mut s, b"$10\r\n01234");
    let r = resume(s.failover());
    assert_eq!(r.skip_reply_bytes, 10);
    assert_eq!(r.replay, cmd(&["GET", "big"]));
    // The new backend sends the whole reply; the client gets only the missing part.
    assert_eq!(reply(&mut s, b"$10\r\n0123"), b"");
    assert_eq!(reply(&mut s, b"456789\r\n"), b"56789\r\n");
    assert_eq!(s.public_state().answered, 1);
    assert_eq!(s.public_state().delivered, 17);

    // Skipping is only for read-only commands.
    let mut s = RespSession::new(cfg);
    s.on_client_bytes(&cmd(&["LPOP", "q"]));
    reply(&mut s, b"$3\r\nab");
    assert_eq!(not_resumable(s.failover()), NotResumable::PartialReply);
}

#[test]
fn shorter_replayed_reply_is_detected() {
    let cfg = RespConfig {
        partial_reply: PartialReply::Skip,
        ..RespConfig::default()
    };
    let mut s = RespSession::new(cfg);
    s.on_client_bytes(&cmd(&["GET", "k"]));
    reply(&mut s, b"$10\r\n01234");
    resume(s.failover());
    let mut d = Vec::new();
    let p = s.on_backend_bytes(b"$-1\r\n", &mut d);
    assert_eq!(p.error, Some(PluginError::ReplayMismatch));
    assert!(matches!(
        not_resumable(s.failover()),
        NotResumable::Broken(_)
    ));
}

#[test]
fn pushes_are_not_replies() {
    let mut s = RespSession::new(RespConfig::default());
    s.on_client_bytes(&cmd(&["GET", "a"]));
    let traffic = b">2\r\n+invalidate\r\n*1\r\n$1\r\na\r\n$1\r\nx\r\n";
    assert_eq!(reply(&mut s, traffic), traffic);
    assert_eq!(s.public_state().answered, 1);
    // A push in progress at failover cannot be completed.
    reply(&mut s, b">2\r\n+invalidate\r\n");
    assert_eq!(not_resumable(s.failover()), NotResumable::PartialReply);
}

#[test]
fn requests_without_arguments_get_no_reply_slot() {
    let mut s = RespSession::new(RespConfig::default());
    assert_eq!(s.on_client_bytes(b"\r\n\n*0\r\nPING\r\n").requests, 1);
    assert_eq!(reply(&mut s, b"+PONG\r\n"), b"+PONG\r\n");
    let mut d = Vec::new();
    let p = s.on_backend_bytes(b"+EXTRA\r\n", &mut d);
    assert_eq!(p.error, Some(PluginError::UnsolicitedReply));
    assert_eq!(render(b"+EXTRA\r\n", &d), b"+EXTRA\r\n", "still relayed");
}

#[test]
fn transactions_and_watch_are_not_resumable() {
    let mut s = RespSession::new(RespConfig::default());
    s.on_client_bytes(&cmd(&["MULTI"]));
    assert_eq!(not_resumable(s.failover()), NotResumable::Transaction);
    let mut s = RespSession::new(RespConfig::default());
    s.on_client_bytes(&[cmd(&["MULTI"]), cmd(&["INCR", "a"])].concat());
    reply(&mut s, b"+OK\r\n+QUEUED\r\n");
    assert_eq!(not_resumable(s.failover()), NotResumable::Transaction);
    s.on_client_bytes(&cmd(&["EXEC"]));
    reply(&mut s, b"*1\r\n:1\r\n");
    assert!(matches!(s.failover(), Failover::Resume(_)));

    let mut s = RespSession::new(RespConfig::default());
    s.on_client_bytes(&cmd(&["WATCH", "k"]));
    reply(&mut s, b"+OK\r\n");
    assert_eq!(not_resumable(s.failover()), NotResumable::Transaction);
    s.on_client_bytes(&cmd(&["UNWATCH"]));
    reply(&mut s, b"+OK\r\n");
    assert!(matches!(s.failover(), Failover::Resume(_)));
}

#[test]
fn subscribe_switches_to_relay_only() {
    let mut s = RespSession::new(RespConfig::default());
    s.on_client_bytes(&cmd(&["SUBSCRIBE", "a", "b"]));
    // RESP2 sends one confirmation per channel: no longer counted, just relayed.
    let confirmations =
        b"*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n*3\r\n$9\r\nsubscribe\r\n$1\r\nb\r\n:2\r\n";
    assert_eq!(reply(&mut s, confirmations), confirmations);
    assert_eq!(not_resumable(s.failover()), NotResumable::Mode("SUBSCRIBE"));
    assert_eq!(
        reply(&mut s, b"garbage that is not RESP"),
        b"garbage that is not RESP"
    );
}

#[test]
fn client_protocol_error_breaks_tracking_but_relays() {
    let mut s = RespSession::new(RespConfig::default());
    let p = s.on_client_bytes(b"*1\r\n:1\r\n");
    assert!(matches!(p.error, Some(PluginError::Resp(_))));
    assert!(matches!(
        not_resumable(s.failover()),
        NotResumable::Broken(_)
    ));
}

/// The full path: PE checkpoints the prelude, the PU rewrites the public part, a new PE
/// restores the backend and swallows the prelude replies.
#[test]
fn prelude_checkpoint_restore_through_a_sealed_cookie() {
    let pool = PoolHandle::new(b"redis".to_vec()).unwrap();
    let ring = KeyRing::new([(1u16, [9u8; 32])]).unwrap();
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);

    let mut pe = RespSession::new(RespConfig::default());
    let mut pu = RespSession::new(RespConfig::default());
    let prelude = [
        cmd(&["AUTH", "alice", "s3cret"]),
        cmd(&["SELECT", "3"]),
        cmd(&["CLIENT", "SETNAME", "app"]),
        b"hello 3\r\n".to_vec(),
        cmd(&["AUTH", "wrong"]),
        cmd(&["GET", "k"]),
    ]
    .concat();
    for side in [&mut pe as &mut dyn SessionState, &mut pu] {
        assert_eq!(side.on_client_bytes(&prelude).requests, 6);
    }
    let replies = b"+OK\r\n+OK\r\n+OK\r\n%1\r\n+proto\r\n:3\r\n-WRONGPASS no\r\n$1\r\nv\r\n";
    let mut d = Vec::new();
    let p = pe.on_backend_bytes(replies, &mut d);
    assert!(p.checkpoint, "prelude changed");
    assert_eq!(p.replies, 6);
    assert_eq!(reply(&mut pu, replies), replies);

    let parts = pe.checkpoint();
    assert_eq!(
        parts.private,
        cmd(&["AUTH", "alice", "s3cret"]),
        "failed AUTH not recorded"
    );
    assert_eq!(
        parts.immutable,
        [
            cmd(&["HELLO", "3"]),
            cmd(&["SELECT", "3"]),
            cmd(&["CLIENT", "SETNAME", "app"])
        ]
        .concat()
    );
    let cookie = ring.seal(&pool, &parts, 10_000, &mut rng).unwrap();

    // More traffic after the checkpoint; the PU's count goes into the public part.
    pu.on_client_bytes(&cmd(&["GET", "x"]));
    reply(&mut pu, b"$-1\r\n");
    let cookie = replace_public(&cookie, &pu.public_state().encode()).unwrap();
    pu.on_client_bytes(&cmd(&["GET", "y"]));
    let r = resume(pu.failover());
    assert_eq!(r.replay, cmd(&["GET", "y"]));

    let mut pe2 = RespSession::new(RespConfig::default());
    let opened = ring.open(&pool, &cookie, 5_000).unwrap();
    assert_eq!(PublicState::decode(&opened.public).unwrap().answered, 7);
    let restore = pe2.restore(&opened).unwrap();
    assert_eq!(restore.swallow_replies, 4);
    assert_eq!(
        restore.prelude,
        [parts.private.clone(), parts.immutable.clone()].concat()
    );
    assert_eq!(pe2.public_state().answered, 7);
    pe2.on_client_bytes(&r.replay);
    // Fresh backend: 4 prelude replies (split across chunks), then the replayed GET's reply.
    let out1 = reply(&mut pe2, b"+OK\r\n%1\r\n+pro");
    let out2 = reply(&mut pe2, b"to\r\n:3\r\n+OK\r\n+OK\r\n$1\r\nY\r\n");
    assert_eq!([out1, out2].concat(), b"$1\r\nY\r\n");
    assert_eq!(reply(&mut pu, b"$1\r\nY\r\n"), b"$1\r\nY\r\n");
    assert_eq!(pu.public_state().answered, 8);
    assert_eq!(
        pe2.checkpoint().private,
        parts.private,
        "restored prelude is kept"
    );
}

#[test]
fn rejected_prelude_is_reported() {
    let mut pe = RespSession::new(RespConfig::default());
    let parts = poolgate_plugins::CookieParts {
        public: vec![],
        immutable: cmd(&["SELECT", "1"]),
        private: cmd(&["AUTH", "old"]),
    };
    assert_eq!(pe.restore(&parts).unwrap().swallow_replies, 2);
    let mut d = Vec::new();
    let p = pe.on_backend_bytes(b"-WRONGPASS\r\n", &mut d);
    assert_eq!(p.error, Some(PluginError::PreludeRejected("AUTH".into())));
    assert!(
        d.iter()
            .all(|x| matches!(x, Delivery::Forward(r) if r.is_empty()))
            || d.is_empty()
    );
}

#[test]
fn restore_rejects_foreign_prelude_commands() {
    let mut pe = RespSession::new(RespConfig::default());
    let bad = |private: Vec<u8>, immutable: Vec<u8>| poolgate_plugins::CookieParts {
        public: vec![],
        immutable,
        private,
    };
    assert!(pe.restore(&bad(cmd(&["FLUSHALL"]), vec![])).is_err());
    assert!(pe.restore(&bad(vec![], cmd(&["AUTH", "x"]))).is_err());
    assert!(pe
        .restore(&bad(
            vec![],
            [cmd(&["SELECT", "1"]), cmd(&["SELECT", "2"])].concat()
        ))
        .is_err());
    assert!(pe
        .restore(&bad(b"*1\r\n$4\r\nAU".to_vec(), vec![]))
        .is_err());
    assert!(pe
        .restore(&bad(vec![], cmd(&["CLIENT", "KILL", "x"])))
        .is_err());
}

#[test]
fn quoted_inline_prelude_is_not_tracked() {
    let mut s = RespSession::new(RespConfig::default());
    s.on_client_bytes(b"AUTH \"pass word\"\r\n");
    let mut d = Vec::new();
    s.on_backend_bytes(b"+OK\r\n", &mut d);
    assert_eq!(not_resumable(s.failover()), NotResumable::Mode("AUTH"));
    // Unquoted inline AUTH is tracked.
    let mut s = RespSession::new(RespConfig::default());
    s.on_client_bytes(b"auth pw\r\n");
    assert!(s.on_backend_bytes(b"+OK\r\n", &mut d).checkpoint);
    assert_eq!(s.checkpoint().private, cmd(&["auth", "pw"]));
}

#[test]
fn hello_with_auth_splits_into_private_and_immutable() {
    let mut pe = RespSession::new(RespConfig::default());
    pe.on_client_bytes(&cmd(&["HELLO", "3", "AUTH", "u", "p", "SETNAME", "n"]));
    let mut d = Vec::new();
    assert!(
        pe.on_backend_bytes(b"%1\r\n+proto\r\n:3\r\n", &mut d)
            .checkpoint
    );
    let parts = pe.checkpoint();
    assert_eq!(parts.private, cmd(&["AUTH", "u", "p"]));
    assert_eq!(
        parts.immutable,
        [cmd(&["HELLO", "3"]), cmd(&["CLIENT", "SETNAME", "n"])].concat()
    );
    // Unknown HELLO options are not guessed at.
    let mut pe = RespSession::new(RespConfig::default());
    pe.on_client_bytes(&cmd(&["HELLO", "3", "FROB"]));
    pe.on_backend_bytes(b"%0\r\n", &mut d);
    assert_eq!(not_resumable(pe.failover()), NotResumable::Mode("HELLO"));
}

#[test]
fn factory_builds_each_plugin() {
    use poolgate_plugins::{line::LineConfig, raw::RawConfig, PluginConfig};
    for (cfg, name) in [
        (PluginConfig::Raw(RawConfig::default()), "raw"),
        (PluginConfig::Line(LineConfig::default()), "line"),
        (PluginConfig::Resp(RespConfig::default()), "resp"),
    ] {
        let mut s = cfg.new_session();
        assert_eq!((cfg.protocol(), s.protocol()), (name, name));
        let parts = s.checkpoint();
        assert_eq!(
            PublicState::decode(&parts.public).unwrap(),
            PublicState::default()
        );
        assert_eq!(s.restore(&parts).unwrap().swallow_replies, 0);
    }
}

#[test]
fn reset_clears_the_prelude() {
    let mut pe = RespSession::new(RespConfig::default());
    pe.on_client_bytes(&[cmd(&["SELECT", "2"]), cmd(&["RESET"])].concat());
    let mut d = Vec::new();
    assert!(pe.on_backend_bytes(b"+OK\r\n", &mut d).checkpoint);
    assert!(pe.on_backend_bytes(b"+RESET\r\n", &mut d).checkpoint);
    assert!(pe.checkpoint().immutable.is_empty());
}

#[derive(Clone, Debug)]
enum Op {
    Get,
    Set,
    Incr,
}

proptest! {
    /// For any pipeline and any number of replies before the failure, the replay is
    /// exactly the unanswered suffix (minus non-idempotent requests at-most-once), and the
    /// client ends up with one reply per request, in order.
    #[test]
    fn failover_bookkeeping(ops in proptest::collection::vec(prop_oneof![Just(Op::Get), Just(Op::Set), Just(Op::Incr)], 1..12),
                            answered in any::<usize>(), at_least_once in any::<bool>(), cut in any::<usize>()) {
        let policy = if at_least_once { NonIdempotent::Replay } else { NonIdempotent::Fail };
        let mut s = RespSession::new(RespConfig { non_idempotent: policy, ..RespConfig::default() });
        let reqs: Vec<Vec<u8>> = ops.iter().enumerate().map(|(i, op)| match op {
            Op::Get => cmd(&["GET", &format!("k{i}")]),
            Op::Set => cmd(&["SET", &format!("k{i}"), "v"]),
            Op::Incr => cmd(&["INCR", &format!("k{i}")]),
        }).collect();
        let stream = reqs.concat();
        let cut = cut % (stream.len() + 1);
        s.on_client_bytes(&stream[..cut]);
        s.on_client_bytes(&stream[cut..]);
        let k = answered % (ops.len() + 1);
        let reply_for = |i: usize| format!(":{i}\r\n").into_bytes();
        let first: Vec<u8> = (0..k).flat_map(reply_for).collect();
        let mut client = reply(&mut s, &first);
        let r = resume(s.failover());
        let replayed: Vec<usize> = (k..ops.len()).filter(|&i| at_least_once || !matches!(ops[i], Op::Incr)).collect();
        let want_replay: Vec<u8> = replayed.iter().flat_map(|&i| reqs[i].clone()).collect();
        prop_assert_eq!(&r.replay, &want_replay);
        client.extend_from_slice(&r.to_client);
        let second: Vec<u8> = replayed.iter().flat_map(|&i| reply_for(i)).collect();
        client.extend(reply(&mut s, &second));
        let want: Vec<u8> = (0..ops.len()).flat_map(|i| {
            if i >= k && !at_least_once && matches!(ops[i], Op::Incr) { NOT_REPLAYED_ERROR.to_vec() } else { reply_for(i) }
        }).collect();
        prop_assert_eq!(client, want);
        prop_assert_eq!(s.public_state().answered, ops.len() as u64);
        prop_assert_eq!(s.unanswered(), 0);
    }

    /// The plugin never panics on arbitrary traffic in both directions, at any failover point.
    #[test]
    fn arbitrary_traffic_never_panics(chunks in proptest::collection::vec((any::<bool>(), proptest::collection::vec(any::<u8>(), 0..64)), 0..12), fail_at in any::<usize>()) {
        let mut s = RespSession::new(RespConfig::default());
        let fail_at = fail_at % (chunks.len() + 1);
        for (i, (client, bytes)) in chunks.iter().enumerate() {
            if i == fail_at { let _ = s.failover(); }
            if *client {
                s.on_client_bytes(bytes);
            } else {
                let mut d = Vec::new();
                s.on_backend_bytes(bytes, &mut d);
                let _ = render(bytes, &d);
            }
        }
        let _ = s.checkpoint();
    }
}
