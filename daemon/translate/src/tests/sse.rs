//! SSE framing: same events whatever the chunking, zero-copy inside a chunk.

use bytes::Bytes;

use super::streams::{ANTHROPIC_STREAM, OPENAI_STREAM};
use super::{events, wire};
use crate::{SseEvent, SseFramer};

/// Frames `stream` cut at `cuts` (sorted byte offsets).
fn framed(stream: &[u8], cuts: &[usize]) -> Vec<SseEvent> {
    let mut framer = SseFramer::new();
    let mut out = Vec::new();
    let mut start = 0;
    for &cut in cuts.iter().chain(std::iter::once(&stream.len())) {
        framer.push(Bytes::copy_from_slice(&stream[start..cut]));
        out.extend(std::iter::from_fn(|| framer.pop()));
        start = cut;
    }
    assert_eq!(framer.pending_len(), 0);
    out
}

fn fixtures() -> Vec<Vec<u8>> {
    let anthropic = wire(ANTHROPIC_STREAM);
    let crlf = String::from_utf8(anthropic.clone()).unwrap().replace('\n', "\r\n").into_bytes();
    // A lone CR at the very end could still be followed by LF: end the CR-only stream with one.
    let cr = (String::from_utf8(wire(OPENAI_STREAM)).unwrap().replace('\n', "\r") + "\n").into_bytes();
    vec![anthropic, wire(OPENAI_STREAM), crlf, cr]
}

#[test]
fn every_split_point_gives_the_same_events() {
    for stream in fixtures() {
        let whole = events(&stream);
        assert!(whole.len() > 5);
        for cut in 0..=stream.len() {
            assert_eq!(framed(&stream, &[cut]), whole, "cut at {cut}");
        }
        let bytewise: Vec<usize> = (1..stream.len()).collect();
        assert_eq!(framed(&stream, &bytewise), whole, "one byte at a time");
    }
}

#[test]
fn line_endings_do_not_change_the_events() {
    let [lf, openai, crlf, cr] = <[Vec<u8>; 4]>::try_from(fixtures()).unwrap();
    let strip = |evs: Vec<SseEvent>| evs.into_iter().map(|e| (e.event, e.data)).collect::<Vec<_>>();
    assert_eq!(strip(events(&lf)), strip(events(&crlf)));
    assert_eq!(strip(events(&openai)), strip(events(&cr)));
}

#[test]
fn events_inside_one_chunk_are_not_copied() {
    let stream = Bytes::from(wire(ANTHROPIC_STREAM));
    let range = stream.as_ptr() as usize..stream.as_ptr() as usize + stream.len();
    let mut framer = SseFramer::new();
    framer.push(stream.clone());
    let mut n = 0;
    while let Some(event) = framer.pop() {
        assert!(range.contains(&(event.raw.as_ptr() as usize)), "event {n} was copied");
        n += 1;
    }
    assert!(n > 10);
    // The raw slices put back together are the stream itself.
    let split = events(&stream);
    assert_eq!(split.iter().flat_map(|e| e.raw.to_vec()).collect::<Vec<u8>>(), stream.to_vec());
}

fn check(input: &str, expected: &[(Option<&str>, &str)]) {
    let actual: Vec<(Option<String>, String)> = events(input.as_bytes()).into_iter().map(|e| (e.event, e.data)).collect();
    let expected: Vec<(Option<String>, String)> = expected.iter().map(|(e, d)| (e.map(str::to_owned), (*d).to_owned())).collect();
    assert_eq!(actual, expected, "for {input:?}");
}

#[test]
fn field_parsing() {
    check("data: a\n\n", &[(None, "a")]);
    check("data:a\n\n", &[(None, "a")]);
    check("data:  two spaces\n\n", &[(None, " two spaces")]);
    check("data: line 1\ndata: line 2\n\n", &[(None, "line 1\nline 2")]);
    check("data\n\n", &[(None, "")]);
    check(": keep-alive\n\n", &[(None, "")]);
    check(": comment\nevent: ping\ndata: {}\nid: 7\nretry: 100\n\n", &[(Some("ping"), "{}")]);
    check("\n\n\ndata: x\n\n\n\ndata: y\n\n", &[(None, "x"), (None, "y")]);
    check("data: a\r\n\r\ndata: b\r\rdata: c\n\r\n", &[(None, "a"), (None, "b"), (None, "c")]);
    check("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n", &[(Some("message_stop"), "{\"type\":\"message_stop\"}")]);
}

#[test]
fn end_of_stream() {
    let mut framer = SseFramer::new();
    framer.push(Bytes::from_static(b"data: [DONE]\n"));
    assert_eq!(framer.pop(), None);
    assert_eq!(framer.pending_len(), 13);
    let last = framer.finish().unwrap();
    assert_eq!(last.data, "[DONE]");
    assert_eq!(framer.pending_len(), 0);

    // A line cut mid-way is not an event.
    let mut framer = SseFramer::new();
    framer.push(Bytes::from_static(b"data: {\"choices\":[{\"delta\":{\"content\":\"Hel"));
    assert_eq!(framer.pop(), None);
    assert_eq!(framer.finish(), None);

    // A blank line ended by a lone CR at the very end of a chunk waits for a possible LF.
    let mut framer = SseFramer::new();
    framer.push(Bytes::from_static(b"data: x\r\r"));
    assert_eq!(framer.pop(), None);
    framer.push(Bytes::from_static(b"\ndata: y\n\n"));
    let got: Vec<String> = std::iter::from_fn(|| framer.pop()).map(|e| e.data).collect();
    assert_eq!(got, ["x", "y"]);
}
