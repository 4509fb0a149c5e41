//! The deterministic "model": the answer is a pure function of the request.
//!
//! Rules (also in the crate README):
//! - a trailing assistant message is a *prefill*; it is set aside and the
//!   answer is computed from the messages before it;
//! - if the request offers tools and the last user message starts with
//!   `call:NAME`, the answer is a call to tool `NAME` with arguments `{}`;
//! - else if the last user message starts with `say:`, the answer is exactly
//!   the rest of that message, trimmed;
//! - else it is a sentence of 12–24 words from a fixed word list, chosen by
//!   an FNV-1a hash of the model name and the text of every message;
//! - with a prefill `P`, if the answer starts with `P` the reply is the rest
//!   of the answer, otherwise the whole answer;
//! - the earliest stop sequence cuts the reply before it; `max_tokens` cuts it
//!   after that many words; whichever comes first decides the finish reason.
//!
//! Tokens are whitespace-separated words: the prompt counts the words of
//! every message (system included) plus one per message; the completion
//! counts the words of the reply (a tool call counts as 1).

use std::borrow::Cow;

use crate::ids::splitmix64;
use crate::wire::Text;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    System,
    User,
    Assistant,
    Other,
}

impl Role {
    pub(crate) fn parse(s: &str) -> Self {
        match s {
            "system" | "developer" => Role::System,
            "user" => Role::User,
            "assistant" => Role::Assistant,
            _ => Role::Other,
        }
    }
}

#[derive(Debug)]
pub(crate) struct Msg<'a> {
    pub(crate) role: Role,
    pub(crate) text: Text<'a>,
}

/// A request reduced to what the answer depends on.
#[derive(Debug)]
pub(crate) struct Conversation<'a> {
    pub(crate) model: Cow<'a, str>,
    pub(crate) messages: Vec<Msg<'a>>,
    /// Whether the request offers tools.
    pub(crate) tools: bool,
}

#[derive(Debug, Default)]
pub(crate) struct Limits<'a, 's> {
    pub(crate) max_tokens: Option<u64>,
    pub(crate) stop: &'s [Cow<'a, str>],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Finish {
    /// The answer ended by itself.
    End,
    /// `max_tokens` cut it.
    Length,
    /// The stop sequence with this index in the request's list cut it.
    Stop(usize),
    /// The answer is a tool call.
    ToolUse,
}

#[derive(Debug)]
pub(crate) enum Reply {
    Text(String),
    ToolCall { name: String },
}

#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) reply: Reply,
    pub(crate) finish: Finish,
    pub(crate) prompt_tokens: u64,
    pub(crate) completion_tokens: u64,
}

impl Answer {
    pub(crate) fn text(&self) -> &str {
        match &self.reply {
            Reply::Text(t) => t,
            Reply::ToolCall { .. } => "",
        }
    }
}

const WORDS: [&str; 64] = [
    "the", "quick", "signal", "engine", "river", "stable", "proxy", "bright", "answer", "garden", "harbor", "silent", "power", "window",
    "little", "orange", "steady", "cloud", "local", "model", "token", "record", "shadow", "simple", "copper", "valley", "summer", "gentle",
    "rapid", "paper", "mirror", "forest", "common", "hidden", "golden", "winter", "island", "narrow", "candle", "marble", "distant",
    "honest", "gravel", "meadow", "pocket", "velvet", "thunder", "lantern", "canyon", "willow", "ember", "falcon", "granite", "harvest",
    "journey", "kettle", "ladder", "morning", "needle", "orchard", "pebble", "quartz", "ribbon", "saddle",
];

pub(crate) const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a: `h` (start from [`FNV_OFFSET`]) extended by `bytes`.
pub(crate) fn fnv1a(mut h: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

impl Conversation<'_> {
    /// Whether the last message is an assistant prefill.
    pub(crate) fn has_prefill(&self) -> bool {
        self.messages.last().is_some_and(|m| m.role == Role::Assistant)
    }

    pub(crate) fn prompt_tokens(&self) -> u64 {
        self.messages.iter().map(|m| m.text.words() + 1).sum()
    }
}

/// The sentence for a conversation without `say:`.
fn generated(model: &str, messages: &[Msg<'_>]) -> String {
    let mut h = fnv1a(FNV_OFFSET, model.as_bytes());
    for m in messages {
        h = fnv1a(h, &[0xff]);
        for part in m.text.parts() {
            h = fnv1a(h, part.as_bytes());
            h = fnv1a(h, &[0xfe]);
        }
    }
    let n = 12 + (h % 13) as usize;
    let mut out = String::with_capacity(n * 8);
    let mut state = h;
    for i in 0..n {
        state = splitmix64(state);
        let word = WORDS[(state % WORDS.len() as u64) as usize];
        if i == 0 {
            let mut chars = word.chars();
            if let Some(c) = chars.next() {
                out.extend(c.to_uppercase());
                out.push_str(chars.as_str());
            }
        } else {
            out.push(' ');
            out.push_str(word);
        }
    }
    out.push('.');
    out
}

/// Byte offset just after the `n`-th whitespace-separated word, if the text
/// has more than `n` words.
fn cut_after_words(text: &str, n: u64) -> Option<usize> {
    let mut words = 0u64;
    let mut in_word = false;
    let mut end_of_last = 0;
    for (i, c) in text.char_indices() {
        if c.is_whitespace() {
            if in_word {
                in_word = false;
                end_of_last = i;
            }
        } else if !in_word {
            in_word = true;
            words += 1;
            if words > n {
                return Some(end_of_last);
            }
        }
    }
    None
}

pub(crate) fn answer(conv: &Conversation<'_>, limits: &Limits<'_, '_>) -> Answer {
    let prompt_tokens = conv.prompt_tokens();
    let (base, prefill) = match conv.messages.split_last() {
        Some((last, rest)) if last.role == Role::Assistant => (rest, Some(last.text.joined())),
        _ => (&conv.messages[..], None),
    };
    let last_user = base.iter().rev().find(|m| m.role == Role::User).map(|m| m.text.joined());
    let last_user = last_user.as_deref().unwrap_or("");

    if conv.tools
        && let Some(rest) = last_user.strip_prefix("call:")
        && let Some(name) = rest.split_whitespace().next()
    {
        return Answer { reply: Reply::ToolCall { name: name.to_owned() }, finish: Finish::ToolUse, prompt_tokens, completion_tokens: 1 };
    }

    let full: Cow<'_, str> = match last_user.strip_prefix("say:") {
        Some(rest) => Cow::Borrowed(rest.trim()),
        None => Cow::Owned(generated(&conv.model, base)),
    };
    let mut reply: &str = &full;
    if let Some(p) = prefill.as_deref()
        && !p.is_empty()
        && let Some(rest) = reply.strip_prefix(p)
    {
        reply = rest;
    }

    let stop =
        limits.stop.iter().enumerate().filter(|(_, s)| !s.is_empty()).filter_map(|(i, s)| reply.find(&**s).map(|pos| (pos, i))).min();
    let length = limits.max_tokens.and_then(|n| cut_after_words(reply, n));
    let (end, finish) = match (stop, length) {
        (Some((s, i)), Some(t)) if s <= t => (s, Finish::Stop(i)),
        (Some((s, i)), None) => (s, Finish::Stop(i)),
        (_, Some(t)) => (t, Finish::Length),
        (None, None) => (reply.len(), Finish::End),
    };
    let reply = &reply[..end];
    Answer { completion_tokens: reply.split_whitespace().count() as u64, reply: Reply::Text(reply.to_owned()), finish, prompt_tokens }
}

/// Splits a reply into stream chunks, one per word: each chunk is a word
/// with the whitespace before it (leading whitespace stays with the first
/// word, trailing whitespace with the last), so the chunks concatenate to
/// the reply.
pub(crate) fn chunks(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        // The chunk ends where the whitespace before the second word starts.
        let mut seen_word = false;
        let mut space_start = None;
        let mut cut = rest.len();
        for (i, c) in rest.char_indices() {
            if c.is_whitespace() {
                if seen_word && space_start.is_none() {
                    space_start = Some(i);
                }
            } else if let Some(s) = space_start {
                cut = s;
                break;
            } else {
                seen_word = true;
            }
        }
        let (chunk, tail) = rest.split_at(cut);
        rest = tail;
        Some(chunk)
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn conv<'a>(model: &'a str, msgs: &[(Role, &'a str)]) -> Conversation<'a> {
        Conversation {
            model: Cow::Borrowed(model),
            messages: msgs.iter().map(|(r, t)| Msg { role: *r, text: Text::One(Cow::Borrowed(t)) }).collect(),
            tools: false,
        }
    }

    fn check(msgs: &[(Role, &str)], max_tokens: Option<u64>, stop: &[&str], want: &str, finish: Finish) {
        let c = conv("m", msgs);
        let stop: Vec<Cow<'_, str>> = stop.iter().map(|s| Cow::Borrowed(*s)).collect();
        let a = answer(&c, &Limits { max_tokens, stop: &stop });
        assert_eq!(a.text(), want, "{msgs:?}");
        assert_eq!(a.finish, finish, "{msgs:?}");
        assert_eq!(a.completion_tokens, want.split_whitespace().count() as u64);
    }

    #[test]
    fn answer_rules() {
        use Role::*;
        check(&[(User, "say: Hello brave world ")], None, &[], "Hello brave world", Finish::End);
        check(&[(User, "say:Hello brave world")], Some(2), &[], "Hello brave", Finish::Length);
        check(&[(User, "say:Hello brave world")], Some(3), &[], "Hello brave world", Finish::End);
        check(&[(User, "say:Hello brave world")], Some(0), &[], "", Finish::Length);
        check(&[(User, "say:Hello brave world")], None, &["ave"], "Hello br", Finish::Stop(0));
        check(&[(User, "say:a b c d")], Some(1), &["c"], "a", Finish::Length);
        check(&[(User, "say:a b c d")], Some(3), &["x", "c"], "a b ", Finish::Stop(1));
        check(&[(User, "say:Hello brave world"), (Assistant, "Hello")], None, &[], " brave world", Finish::End);
        check(&[(User, "say:Hello brave world"), (Assistant, "Bye")], None, &[], "Hello brave world", Finish::End);
        check(&[(System, "be terse"), (User, "say:ok")], None, &[], "ok", Finish::End);
    }

    #[test]
    fn generated_is_deterministic_and_sized() {
        let a = answer(&conv("gpt-4o", &[(Role::User, "hello")]), &Limits::default());
        let b = answer(&conv("gpt-4o", &[(Role::User, "hello")]), &Limits::default());
        let c = answer(&conv("gpt-4o-mini", &[(Role::User, "hello")]), &Limits::default());
        assert_eq!(a.text(), b.text());
        assert_ne!(a.text(), c.text());
        let n = a.text().split_whitespace().count();
        assert!((12..=24).contains(&n), "{n}");
        assert!(a.text().ends_with('.'));
        assert_eq!(a.prompt_tokens, 2);
    }

    #[test]
    fn prefill_of_generated_answer_continues_it() {
        let full = answer(&conv("m", &[(Role::User, "hi")]), &Limits::default());
        let prefix: String = full.text().chars().take(10).collect();
        let cont = answer(&conv("m", &[(Role::User, "hi"), (Role::Assistant, &prefix)]), &Limits::default());
        assert_eq!(format!("{prefix}{}", cont.text()), full.text());
    }

    #[test]
    fn tool_calls() {
        let mut c = conv("m", &[(Role::User, "call:get_weather please")]);
        c.tools = true;
        let a = answer(&c, &Limits::default());
        assert!(matches!(a.reply, Reply::ToolCall { ref name } if name == "get_weather"));
        c.tools = false;
        let a = answer(&c, &Limits::default());
        assert!(matches!(a.reply, Reply::Text(_)));
    }

    #[test]
    fn chunking_concatenates() {
        for text in ["Hello brave world", " lead", "a  b\n c ", "one", "", "x y ", "  "] {
            let parts: Vec<&str> = chunks(text).collect();
            assert_eq!(parts.concat(), text);
            let words = text.split_whitespace().count();
            if words > 0 {
                assert_eq!(parts.len(), words, "{text:?} {parts:?}");
            }
        }
        assert_eq!(chunks("Hello brave world").collect::<Vec<_>>(), ["Hello", " brave", " world"]);
    }
}
