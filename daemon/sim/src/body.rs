//! Response bodies: a whole buffer, a list of ready frames (an instant
//! stream), or a paced stream that can stall or abort.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::Stream;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use http::{Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use serde::Serialize;

use crate::ids::Id;
use crate::route::Flavor;

/// Ends a response body with an error, which makes hyper drop the
/// connection without completing the message.
#[derive(Debug)]
pub(crate) struct BodyAbort;

impl std::fmt::Display for BodyAbort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("response aborted by an injected fault")
    }
}

impl std::error::Error for BodyAbort {}

pub(crate) type FrameStream = Pin<Box<dyn Stream<Item = Result<Bytes, BodyAbort>> + Send>>;

pub(crate) enum SimBody {
    Full(Option<Bytes>),
    Frames(std::vec::IntoIter<Bytes>),
    Stream(FrameStream),
}

impl Body for SimBody {
    type Data = Bytes;
    type Error = BodyAbort;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyAbort>>> {
        match self.get_mut() {
            SimBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            SimBody::Frames(it) => Poll::Ready(it.next().map(|b| Ok(Frame::data(b)))),
            SimBody::Stream(s) => s.as_mut().poll_next(cx).map(|o| o.map(|r| r.map(Frame::data))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            SimBody::Full(b) => b.is_none(),
            SimBody::Frames(it) => it.len() == 0,
            SimBody::Stream(_) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            SimBody::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            SimBody::Full(None) => SizeHint::with_exact(0),
            SimBody::Frames(_) | SimBody::Stream(_) => SizeHint::default(),
        }
    }
}

pub(crate) type Resp = Response<SimBody>;

/// Serializes a value; our response types cannot fail to serialize, but a
/// failure is still reported rather than panicking.
pub(crate) fn to_json<T: Serialize>(value: &T, capacity: usize) -> Result<Bytes, serde_json::Error> {
    let mut buf = Vec::with_capacity(capacity);
    serde_json::to_writer(&mut buf, value)?;
    Ok(Bytes::from(buf))
}

/// Adds the request id header each API sets on every response.
pub(crate) fn with_request_id(mut resp: Resp, flavor: Flavor) -> Resp {
    let (name, id) = match flavor {
        Flavor::OpenAi => ("x-request-id", Id::new("req_", 32)),
        Flavor::Anthropic => ("request-id", Id::new("req_011C", 20)),
    };
    if let Ok(v) = HeaderValue::from_str(id.as_str()) {
        resp.headers_mut().insert(name, v);
    }
    resp
}

pub(crate) fn json_bytes(status: StatusCode, body: Bytes) -> Resp {
    let mut resp = Response::new(SimBody::Full(Some(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

pub(crate) fn json_value<T: Serialize>(status: StatusCode, value: &T) -> Resp {
    match to_json(value, 256) {
        Ok(b) => json_bytes(status, b),
        Err(e) => plain(StatusCode::INTERNAL_SERVER_ERROR, format!("serialization failed: {e}")),
    }
}

pub(crate) fn plain(status: StatusCode, text: String) -> Resp {
    let mut resp = Response::new(SimBody::Full(Some(Bytes::from(text))));
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    resp
}

pub(crate) fn sse_response(body: SimBody) -> Resp {
    let mut resp = Response::new(body);
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream; charset=utf-8"));
    resp.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

/// Builds a stream's events into one buffer and splits it into one frame
/// per event (zero-copy), remembering where the content events are so
/// faults can be placed among them.
pub(crate) struct SseWriter {
    buf: BytesMut,
    frames: Vec<Bytes>,
    content_start: Option<usize>,
    content_end: Option<usize>,
}

impl SseWriter {
    pub(crate) fn new(events: usize) -> Self {
        Self { buf: BytesMut::with_capacity(events * 240), frames: Vec::with_capacity(events + 1), content_start: None, content_end: None }
    }

    pub(crate) fn event<T: Serialize>(&mut self, name: Option<&str>, data: &T) -> Result<(), serde_json::Error> {
        if let Some(name) = name {
            self.buf.put_slice(b"event: ");
            self.buf.put_slice(name.as_bytes());
            self.buf.put_u8(b'\n');
        }
        self.buf.put_slice(b"data: ");
        serde_json::to_writer((&mut self.buf).writer(), data)?;
        self.buf.put_slice(b"\n\n");
        self.frames.push(self.buf.split().freeze());
        Ok(())
    }

    pub(crate) fn raw(&mut self, bytes: &[u8]) {
        self.buf.put_slice(bytes);
        self.frames.push(self.buf.split().freeze());
    }

    /// Marks that the next events are content chunks.
    pub(crate) fn begin_content(&mut self) {
        self.content_start = Some(self.frames.len());
    }

    /// Marks that the content chunks are over.
    pub(crate) fn end_content(&mut self) {
        self.content_end = Some(self.frames.len());
    }

    pub(crate) fn finish(self) -> SsePlan {
        let end = self.content_end.unwrap_or(self.frames.len());
        let start = self.content_start.unwrap_or(end).min(end);
        SsePlan { frames: self.frames, content_start: start, content_end: end }
    }
}

/// The events of a stream, and which of them are content chunks.
pub(crate) struct SsePlan {
    pub(crate) frames: Vec<Bytes>,
    pub(crate) content_start: usize,
    pub(crate) content_end: usize,
}

impl SsePlan {
    /// The frame index before which a fault placed "after `n` content
    /// chunks" happens: never later than the end of the content, so it
    /// always comes before the terminal events.
    pub(crate) fn after_chunks(&self, n: u32) -> usize {
        (self.content_start + n as usize).min(self.content_end)
    }
}
