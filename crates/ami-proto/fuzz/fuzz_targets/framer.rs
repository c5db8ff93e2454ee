//! Fuzz target: arbitrary bytes through the framer and parser, in read sizes taken from the
//! input itself, checking the invariants the client relies on.
#![no_main]

use ami_proto::{Decoder, Frame, views::Message};
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte picks the read size and the second a small or the default size cap, so the
    // skipping path after an oversized packet is exercised too.
    let (chunk, cap, input) = match data {
        [a, b, rest @ ..] => (usize::from(*a).max(1), if b % 2 == 0 { 64 } else { 1 << 20 }, rest),
        _ => return,
    };
    let mut decoder = Decoder::with_max_packet_size(cap);
    let mut buf = BytesMut::new();
    let mut last_error = None;
    let mut check = |result: Result<Option<Frame>, ami_proto::DecodeError>| match result {
        Ok(Some(Frame::Packet(p))) => {
            assert!(!p.is_empty());
            assert!(p.as_bytes().len() <= cap);
            // Every accessor and view must work on whatever was parsed.
            let _ = (p.kind(), p.name(), p.action_id());
            for h in p.headers() {
                let _ = (h.key(), h.value());
            }
            let _ = Message::classify(&p);
            let _ = ami_proto::views::command_output(&p);
            true
        }
        Ok(Some(Frame::Banner(_))) => true,
        Ok(None) => false,
        Err(e) => {
            assert!(e.offset() < input.len() as u64);
            if let Some(prev) = last_error.replace(e.offset()) {
                assert!(prev < e.offset());
            }
            true
        }
    };
    for piece in input.chunks(chunk) {
        buf.extend_from_slice(piece);
        while check(decoder.decode(&mut buf)) {}
    }
    while check(decoder.decode_eof(&mut buf)) {}
    assert_eq!(decoder.stream_offset(), input.len() as u64);
});
