//! Turning token pieces (bytes) into valid UTF-8 deltas, honouring stop sequences.

/// What pushing a piece produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Push {
    /// Text that can be sent now (may be empty).
    Emit(String),
    /// A stop sequence matched: send `emit` (the text before it) and finish.
    Stopped { emit: String, stop: String },
}

/// Accumulates the bytes of generated tokens and releases text only when it is valid UTF-8 and
/// cannot be the beginning of a stop sequence.
#[derive(Debug, Default)]
pub(crate) struct TextStream {
    /// Bytes of an incomplete UTF-8 sequence at the end of the last piece.
    partial: Vec<u8>,
    /// Decoded text not yet released (a possible stop-sequence prefix).
    held: String,
    stops: Vec<String>,
}

impl TextStream {
    pub(crate) fn new(stops: Vec<String>) -> Self {
        TextStream { partial: Vec::new(), held: String::new(), stops: stops.into_iter().filter(|s| !s.is_empty()).collect() }
    }

    pub(crate) fn push(&mut self, bytes: &[u8]) -> Push {
        self.partial.extend_from_slice(bytes);
        self.decode_partial();
        self.release()
    }

    /// Flush everything held (the generation ended for another reason).
    pub(crate) fn finish(&mut self) -> String {
        if !self.partial.is_empty() {
            self.held.push_str(&String::from_utf8_lossy(&self.partial));
            self.partial.clear();
        }
        std::mem::take(&mut self.held)
    }

    fn decode_partial(&mut self) {
        loop {
            match std::str::from_utf8(&self.partial) {
                Ok(s) => {
                    self.held.push_str(s);
                    self.partial.clear();
                    return;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    // SAFETY-free: the prefix up to valid_up_to is valid UTF-8 by definition.
                    self.held.push_str(&String::from_utf8_lossy(&self.partial[..valid]));
                    match e.error_len() {
                        // Invalid bytes in the middle: replace them and go on.
                        Some(n) => {
                            self.held.push(char::REPLACEMENT_CHARACTER);
                            self.partial.drain(..valid + n);
                        }
                        // An incomplete sequence at the end: wait for the next piece.
                        None => {
                            self.partial.drain(..valid);
                            return;
                        }
                    }
                }
            }
        }
    }

    fn release(&mut self) -> Push {
        // The earliest stop sequence wins.
        let hit = self
            .stops
            .iter()
            .filter_map(|s| self.held.find(s.as_str()).map(|at| (at, s)))
            .min_by_key(|(at, s)| (*at, std::cmp::Reverse(s.len())));
        if let Some((at, stop)) = hit {
            let stop = stop.clone();
            let emit = self.held[..at].to_owned();
            self.held.clear();
            self.partial.clear();
            return Push::Stopped { emit, stop };
        }
        // Hold back the longest suffix that is a proper prefix of some stop sequence.
        let keep = self.stops.iter().map(|s| overlap(&self.held, s)).max().unwrap_or(0);
        let cut = self.held.len() - keep;
        let emit = self.held[..cut].to_owned();
        self.held.drain(..cut);
        Push::Emit(emit)
    }
}

/// Length of the longest suffix of `text` that is a proper prefix of `stop`, on a char boundary.
fn overlap(text: &str, stop: &str) -> usize {
    let max = text.len().min(stop.len().saturating_sub(1));
    (1..=max)
        .rev()
        .find(|&k| text.is_char_boundary(text.len() - k) && stop.as_bytes().starts_with(&text.as_bytes()[text.len() - k..]))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], pieces: &[&[u8]]) -> (Vec<String>, Option<String>) {
        let mut t = TextStream::new(stops.iter().map(|s| s.to_string()).collect());
        let mut out = Vec::new();
        for p in pieces {
            match t.push(p) {
                Push::Emit(s) => out.push(s),
                Push::Stopped { emit, stop } => {
                    out.push(emit);
                    return (out, Some(stop));
                }
            }
        }
        out.push(t.finish());
        (out, None)
    }

    #[test]
    fn splits_multibyte_sequences() {
        let e = "é".as_bytes(); // 2 bytes
        let (out, stop) = run(&[], &[b"a", &e[..1], &e[1..], b"b"]);
        assert_eq!(out, vec!["a", "", "é", "b", ""]);
        assert_eq!(stop, None);
        let emoji = "😀".as_bytes();
        let (out, _) = run(&[], &[&emoji[..1], &emoji[1..3], &emoji[3..]]);
        assert_eq!(out.concat(), "😀");
        assert_eq!(out[0], "");
        assert_eq!(out[1], "");
    }

    #[test]
    fn invalid_bytes_are_replaced() {
        let (out, _) = run(&[], &[b"a\xffb"]);
        assert_eq!(out.concat(), "a\u{fffd}b");
    }

    #[test]
    fn holds_back_possible_stop_prefix() {
        let (out, stop) = run(&["END"], &[b"hello E", b"N", b"D more"]);
        assert_eq!(out, vec!["hello ", "", ""]);
        assert_eq!(stop.as_deref(), Some("END"));
        // A false alarm is released when it stops matching.
        let (out, stop) = run(&["END"], &[b"hello E", b"NX"]);
        assert_eq!(out, vec!["hello ", "ENX", ""]);
        assert_eq!(stop, None);
        // Held text is flushed at the end.
        let (out, _) = run(&["END"], &[b"abc EN"]);
        assert_eq!(out, vec!["abc ", "EN"]);
    }

    #[test]
    fn earliest_stop_wins_and_stop_inside_piece() {
        let (out, stop) = run(&["\n\n", "b"], &[b"a\n\nb"]);
        assert_eq!(out, vec!["a"]);
        assert_eq!(stop.as_deref(), Some("\n\n"));
        let (out, stop) = run(&["xyz"], &[b"12xyz34"]);
        assert_eq!(out, vec!["12"]);
        assert_eq!(stop.as_deref(), Some("xyz"));
    }

    #[test]
    fn multibyte_stop() {
        let s = "停".as_bytes();
        let (out, stop) = run(&["停"], &[b"ab", &s[..2], &s[2..], b"c"]);
        assert_eq!(out.concat(), "ab");
        assert_eq!(stop.as_deref(), Some("停"));
    }
}
