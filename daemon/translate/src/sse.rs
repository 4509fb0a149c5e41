//! Incremental server-sent-events framing.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

/// One server-sent event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The event's exact bytes, its terminating blank line included, for pass-through.
    pub raw: Bytes,
    /// The `event:` field, if any.
    pub event: Option<String>,
    /// The `data:` lines joined with `\n` (empty if there were none). Invalid UTF-8 is replaced;
    /// the decoders check [`SseEvent::raw`] and reject such events.
    pub data: String,
}

impl SseEvent {
    /// Parses one complete event (as cut by [`SseFramer`]). Returns `None` for a block that
    /// holds no field at all (stray blank lines).
    pub fn parse(raw: Bytes) -> Option<SseEvent> {
        let mut event = None;
        let mut data: Option<String> = None;
        let mut any_line = false;
        for line in lines(&raw) {
            if line.is_empty() {
                break;
            }
            any_line = true;
            if line[0] == b':' {
                continue; // comment
            }
            let (name, value) = match line.iter().position(|&b| b == b':') {
                Some(i) => {
                    let v = &line[i + 1..];
                    (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
                }
                None => (line, &[][..]),
            };
            match name {
                b"event" => event = Some(String::from_utf8_lossy(value).into_owned()),
                b"data" => {
                    let value = String::from_utf8_lossy(value);
                    match &mut data {
                        Some(d) => {
                            d.push('\n');
                            d.push_str(&value);
                        }
                        None => data = Some(value.into_owned()),
                    }
                }
                _ => {} // id, retry and unknown fields
            }
        }
        any_line.then(|| SseEvent { raw, event, data: data.unwrap_or_default() })
    }

    /// Whether this event is only comments (keep-alives) or fields without data.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

/// Splits on `\r\n`, `\r` or `\n`.
fn lines(buf: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = buf;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        match rest.iter().position(|&b| b == b'\n' || b == b'\r') {
            Some(i) => {
                let line = &rest[..i];
                let skip = if rest[i] == b'\r' && rest.get(i + 1) == Some(&b'\n') { 2 } else { 1 };
                rest = &rest[i + skip..];
                Some(line)
            }
            None => {
                let line = rest;
                rest = &[];
                Some(line)
            }
        }
    })
}

/// Where the scan of the event being assembled stands.
#[derive(Debug, Clone, Copy)]
struct Scan {
    at_line_start: bool,
    after_cr: bool,
    /// A blank line ended with `\r`: the event ends there, plus a following `\n` if any.
    blank_cr: bool,
}

impl Scan {
    const NEW: Scan = Scan { at_line_start: true, after_cr: false, blank_cr: false };

    /// Scans `buf`; returns the end (exclusive) of the event if it ends inside `buf`.
    fn feed(&mut self, buf: &[u8]) -> Option<usize> {
        for (i, &b) in buf.iter().enumerate() {
            if self.blank_cr {
                return Some(if b == b'\n' { i + 1 } else { i });
            }
            match b {
                b'\n' if self.after_cr => self.after_cr = false,
                b'\n' if self.at_line_start => return Some(i + 1),
                b'\n' => self.at_line_start = true,
                b'\r' if self.at_line_start => self.blank_cr = true,
                b'\r' => {
                    self.at_line_start = true;
                    self.after_cr = true;
                }
                _ => {
                    self.at_line_start = false;
                    self.after_cr = false;
                }
            }
        }
        None
    }
}

/// Incremental SSE framer: [`push`](SseFramer::push) chunks as they arrive and
/// [`pop`](SseFramer::pop) complete events.
///
/// An event that lies inside one pushed chunk is returned as a zero-copy slice of it; only an
/// event that spans chunks is copied (once) into an internal buffer. Events end at a blank line
/// (`\n\n`, `\r\n\r\n`, `\r\r` or mixes); comments and multi-line data are handled by
/// [`SseEvent::parse`]. The events returned are the same whatever the chunking.
#[derive(Debug)]
pub struct SseFramer {
    chunks: VecDeque<Bytes>,
    /// The beginning of an event that spans chunks.
    spill: BytesMut,
    scan: Scan,
}

impl Default for SseFramer {
    fn default() -> Self {
        Self::new()
    }
}

impl SseFramer {
    /// An empty framer.
    pub fn new() -> Self {
        Self { chunks: VecDeque::new(), spill: BytesMut::new(), scan: Scan::NEW }
    }

    /// Adds a chunk of the stream.
    pub fn push(&mut self, chunk: Bytes) {
        if !chunk.is_empty() {
            self.chunks.push_back(chunk);
        }
    }

    /// The next complete event, if one has arrived. Stray blank lines are skipped; events with
    /// only comments are returned (their `data` is empty) so that keep-alives can be forwarded.
    pub fn pop(&mut self) -> Option<SseEvent> {
        loop {
            let front = self.chunks.front_mut()?;
            match self.scan.feed(front) {
                Some(end) => {
                    let raw = if self.spill.is_empty() {
                        front.split_to(end)
                    } else {
                        self.spill.extend_from_slice(&front[..end]);
                        let _ = front.split_to(end);
                        self.spill.split().freeze()
                    };
                    if front.is_empty() {
                        self.chunks.pop_front();
                    }
                    self.scan = Scan::NEW;
                    if let Some(event) = SseEvent::parse(raw) {
                        return Some(event);
                    }
                }
                None => {
                    // The whole chunk belongs to an event that continues in the next one.
                    self.spill.extend_from_slice(front);
                    self.chunks.pop_front();
                }
            }
        }
    }

    /// Bytes held of an event that has not ended yet (after [`pop`](SseFramer::pop) returned
    /// `None`). Non-zero when the stream closes means it was cut mid-event.
    pub fn pending_len(&self) -> usize {
        self.spill.len() + self.chunks.iter().map(Bytes::len).sum::<usize>()
    }

    /// At end of stream: the last event if the server ended it without the final blank line
    /// (lenient; the SSE specification discards it). Call after `pop` returned `None`.
    pub fn finish(&mut self) -> Option<SseEvent> {
        while let Some(chunk) = self.chunks.pop_front() {
            self.spill.extend_from_slice(&chunk);
        }
        self.scan = Scan::NEW;
        let raw = self.spill.split().freeze();
        // Only a complete last line counts: a line cut mid-way is not an event.
        if raw.ends_with(b"\n") || raw.ends_with(b"\r") { SseEvent::parse(raw) } else { None }
    }
}
