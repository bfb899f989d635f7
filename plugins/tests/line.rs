//! Line plugin: framer properties and failover bookkeeping.

use poolgate_plugins::line::{LineConfig, LineFramer, LineSession};
use poolgate_plugins::{
    render, Failover, NotResumable, PartialReply, PluginError, PublicState, SessionState,
};
use proptest::prelude::*;

fn lines(framer: &mut LineFramer, chunks: &[&[u8]]) -> Result<Vec<usize>, PluginError> {
    let mut ends = Vec::new();
    let mut offset = 0;
    for c in chunks {
        let mut pos = 0;
        while pos < c.len() {
            let (n, done) = framer.advance(&c[pos..])?;
            assert!(n >= 1 && n <= c.len() - pos);
            pos += n;
            if done {
                ends.push(offset + pos);
            }
        }
        offset += c.len();
    }
    Ok(ends)
}

fn reply(s: &mut LineSession, bytes: &[u8]) -> Vec<u8> {
    let mut d = Vec::new();
    let p = s.on_backend_bytes(bytes, &mut d);
    assert_eq!(p.error, None);
    render(bytes, &d)
}

#[test]
fn crlf_terminator_across_chunks_and_overlaps() {
    let mut f = LineFramer::new(b"\r\n", 100);
    assert_eq!(
        lines(&mut f, &[b"ab\r", b"\ncd\r\r\n", b"\n\r\n"]).unwrap(),
        vec![4, 9, 12]
    );
    let mut f = LineFramer::new(b"aab", 100);
    assert_eq!(lines(&mut f, &[b"aaab", b"xaab"]).unwrap(), vec![4, 8]);
}

#[test]
fn long_lines_are_an_error() {
    let mut f = LineFramer::new(b"\n", 4);
    assert_eq!(lines(&mut f, &[b"abc\n"]).unwrap(), vec![4]);
    assert_eq!(
        lines(&mut f, &[b"abcd\n"]).unwrap_err(),
        PluginError::LineTooLong { max: 4 }
    );
}

#[test]
fn failover_replays_unanswered_lines() {
    let mut s = LineSession::new(LineConfig::default());
    assert_eq!(s.on_client_bytes(b"one\ntwo\nthr").requests, 2);
    assert_eq!(reply(&mut s, b"1\n"), b"1\n");
    let Failover::Resume(r) = s.failover() else {
        panic!()
    };
    assert_eq!(r.replay, b"two\nthr");
    assert_eq!(r.replayed_requests, 1);
    s.on_client_bytes(b"ee\n");
    assert_eq!(reply(&mut s, b"2\n3\n"), b"2\n3\n");
    assert_eq!(
        s.public_state(),
        PublicState {
            answered: 3,
            delivered: 6
        }
    );
    let mut d = Vec::new();
    let p = s.on_backend_bytes(b"extra\n", &mut d);
    assert_eq!(p.error, Some(PluginError::UnsolicitedReply));
    assert!(matches!(
        s.failover(),
        Failover::NotResumable(NotResumable::Broken(_))
    ));
}

#[test]
fn partial_reply_policy() {
    let mut s = LineSession::new(LineConfig::default());
    s.on_client_bytes(b"q\n");
    reply(&mut s, b"hal");
    assert_eq!(
        s.failover(),
        Failover::NotResumable(NotResumable::PartialReply)
    );

    let mut s = LineSession::new(LineConfig {
        partial_reply: PartialReply::Skip,
        ..LineConfig::default()
    });
    s.on_client_bytes(b"q\n");
    reply(&mut s, b"hal");
    let Failover::Resume(r) = s.failover() else {
        panic!()
    };
    assert_eq!(
        (r.replay.as_slice(), r.skip_reply_bytes),
        (b"q\n".as_slice(), 3)
    );
    assert_eq!(reply(&mut s, b"ha"), b"");
    // Second failover during the skip: still 3 bytes to skip in total.
    let Failover::Resume(r) = s.failover() else {
        panic!()
    };
    assert_eq!(r.skip_reply_bytes, 3);
    assert_eq!(reply(&mut s, b"hallo\n"), b"lo\n");
}

#[test]
fn greeting_is_delivered_once_and_swallowed_after_restore() {
    let cfg = LineConfig {
        terminator: b"\r\n".to_vec(),
        greeting_lines: 1,
        ..LineConfig::default()
    };
    let mut pu = LineSession::new(cfg.clone());
    assert_eq!(reply(&mut pu, b"220 hi"), b"220 hi");
    assert_eq!(
        pu.failover(),
        Failover::NotResumable(NotResumable::GreetingIncomplete)
    );
    assert_eq!(reply(&mut pu, b"\r\n"), b"\r\n");
    pu.on_client_bytes(b"HELO x\r\n");
    let Failover::Resume(r) = pu.failover() else {
        panic!()
    };
    assert_eq!(r.replay, b"HELO x\r\n");

    let mut pe = LineSession::new(cfg);
    let mut parts = pe.checkpoint();
    parts.public = PublicState {
        answered: 4,
        delivered: 10,
    }
    .encode();
    let restore = pe.restore(&parts).unwrap();
    assert_eq!((restore.prelude.len(), restore.swallow_replies), (0, 1));
    pe.on_client_bytes(&r.replay);
    assert_eq!(reply(&mut pe, b"220 other\r\n250 ok\r\n"), b"250 ok\r\n");
    assert_eq!(pe.public_state().answered, 5);
}

#[test]
fn checkpoint_every_n_replies() {
    let mut s = LineSession::new(LineConfig {
        checkpoint_every: 2,
        ..LineConfig::default()
    });
    s.on_client_bytes(b"a\nb\nc\n");
    let mut d = Vec::new();
    assert!(!s.on_backend_bytes(b"1\n", &mut d).checkpoint);
    assert!(s.on_backend_bytes(b"2\n", &mut d).checkpoint);
    s.checkpoint();
    assert!(!s.on_backend_bytes(b"3\n", &mut d).checkpoint);
}

#[test]
fn replay_budget() {
    let mut s = LineSession::new(LineConfig {
        max_replay_bytes: 8,
        ..LineConfig::default()
    });
    s.on_client_bytes(b"0123456789\n");
    assert_eq!(
        s.failover(),
        Failover::NotResumable(NotResumable::ReplayOverflow)
    );
    reply(&mut s, b"ok\n");
    assert!(matches!(s.failover(), Failover::Resume(_)));
}

#[test]
fn sealed_parts_are_refused() {
    let mut s = LineSession::new(LineConfig::default());
    let parts = poolgate_plugins::CookieParts {
        private: b"x".to_vec(),
        ..Default::default()
    };
    assert!(s.restore(&parts).is_err());
}

fn split<'a>(bytes: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut p: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    p.sort_unstable();
    p.dedup();
    let mut out = Vec::new();
    let mut last = 0;
    for x in p {
        out.push(&bytes[last..x]);
        last = x;
    }
    out.push(&bytes[last..]);
    out
}

proptest! {
    #[test]
    fn framer_split_invariance(bytes in proptest::collection::vec(prop_oneof![Just(b'\r'), Just(b'\n'), Just(b'a')], 0..200), cuts in proptest::collection::vec(any::<usize>(), 0..8), crlf in any::<bool>()) {
        let term: &[u8] = if crlf { b"\r\n" } else { b"\n" };
        let whole = lines(&mut LineFramer::new(term, 1 << 20), &[&bytes]).unwrap();
        let chunked = lines(&mut LineFramer::new(term, 1 << 20), &split(&bytes, &cuts)).unwrap();
        prop_assert_eq!(&whole, &chunked);
        // Every end is right after a terminator.
        for e in whole {
            prop_assert!(bytes[..e].ends_with(term));
        }
    }

    #[test]
    fn framer_is_bounded_and_total(bytes in proptest::collection::vec(any::<u8>(), 0..300), max in 1usize..40) {
        let mut f = LineFramer::new(b"\r\n", max);
        match lines(&mut f, &[&bytes]) {
            Ok(_) => prop_assert!(f.in_progress() <= max),
            Err(e) => prop_assert_eq!(e, PluginError::LineTooLong { max }),
        }
    }

    #[test]
    fn replay_is_the_unanswered_suffix(reqs in proptest::collection::vec("[a-z]{0,8}", 1..10), answered in any::<usize>(), cut in any::<usize>()) {
        let mut s = LineSession::new(LineConfig::default());
        let stream: Vec<u8> = reqs.iter().flat_map(|r| format!("{r}\n").into_bytes()).collect();
        let cut = cut % (stream.len() + 1);
        s.on_client_bytes(&stream[..cut]);
        s.on_client_bytes(&stream[cut..]);
        let k = answered % (reqs.len() + 1);
        let replies: Vec<u8> = (0..k).flat_map(|i| format!("r{i}\n").into_bytes()).collect();
        reply(&mut s, &replies);
        let Failover::Resume(r) = s.failover() else { panic!("resumable") };
        let want: Vec<u8> = reqs[k..].iter().flat_map(|r| format!("{r}\n").into_bytes()).collect();
        prop_assert_eq!(r.replay, want);
        prop_assert_eq!(s.public_state().answered, k as u64);
    }
}
