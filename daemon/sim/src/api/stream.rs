//! Turns a planned response into a body, applying the stream faults and the
//! per-chunk delay.

use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use http::header::{CONTENT_LENGTH, HeaderValue};

use crate::body::{BodyAbort, Resp, SimBody, SsePlan, json_bytes, sse_response};
use crate::fault::FaultMode;
use crate::state::Shared;

/// A stream fault taken by a request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StreamFault {
    pub(crate) mode: FaultMode,
    pub(crate) after_chunks: u32,
    pub(crate) delay: Option<Duration>,
    pub(crate) generation: u64,
}

impl StreamFault {
    pub(crate) fn omits_done(fault: Option<StreamFault>) -> bool {
        fault.is_some_and(|f| f.mode == FaultMode::MissingDone)
    }
}

/// The event a `malformed_chunk` fault injects, per route format.
pub(crate) const MALFORMED_OPENAI: &[u8] =
    b"data: {\"id\":\"chatcmpl-malformed\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"tru\n\n";
pub(crate) const MALFORMED_ANTHROPIC: &[u8] =
    b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_del\n\n";
pub(crate) const MALFORMED_RESPONSES: &[u8] =
    b"event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\n\n";

/// An SSE response for `plan`.
pub(crate) fn sse(shared: &Shared, mut plan: SsePlan, fault: Option<StreamFault>, malformed: &'static [u8]) -> Resp {
    if let Some(f) = fault.filter(|f| f.mode == FaultMode::MalformedChunk) {
        let at = plan.after_chunks(f.after_chunks);
        plan.frames.insert(at, Bytes::from_static(malformed));
        plan.content_end += 1;
    }
    let delay = shared.token_delay();
    let pacing = (!delay.is_zero()).then_some((plan.content_start, plan.content_end, delay));
    let fault = fault.filter(|f| matches!(f.mode, FaultMode::CutMidStream | FaultMode::StallMidStream));
    sse_response(body(shared, plan, fault, pacing))
}

/// A non-streaming JSON answer, broken by a stream fault when one applies:
/// `cut_mid_stream` and `stall_mid_stream` send the status, the headers
/// (with the full `Content-Length`) and half the body, then abort or stall;
/// `malformed_chunk` sends a complete response whose body is cut in half.
pub(crate) fn json(shared: &Shared, status: StatusCode, bytes: Bytes, fault: Option<StreamFault>) -> Resp {
    let Some(f) = fault else {
        return json_bytes(status, bytes);
    };
    let half = bytes.len() / 2;
    match f.mode {
        FaultMode::MalformedChunk => json_bytes(status, bytes.slice(..half)),
        FaultMode::CutMidStream | FaultMode::StallMidStream => {
            let len = bytes.len();
            let plan = SsePlan { frames: vec![bytes.slice(..half), bytes.slice(half..)], content_start: 1, content_end: 1 };
            let mut resp = json_bytes(status, Bytes::new());
            *resp.body_mut() = body(shared, plan, Some(f), None);
            resp.headers_mut().insert(CONTENT_LENGTH, HeaderValue::from(len));
            resp
        }
        _ => json_bytes(status, bytes),
    }
}

fn body(shared: &Shared, plan: SsePlan, fault: Option<StreamFault>, pacing: Option<(usize, usize, Duration)>) -> SimBody {
    if fault.is_none() && pacing.is_none() {
        return SimBody::Frames(plan.frames.into_iter());
    }
    let fault_at = fault.map(|f| (plan.after_chunks(f.after_chunks), f));
    let mut release = shared.faults.release_rx();
    SimBody::Stream(Box::pin(async_stream::stream! {
        for (i, frame) in plan.frames.into_iter().enumerate() {
            if let Some((at, f)) = fault_at.filter(|(at, _)| *at == i) {
                // Let hyper flush what was sent so far before acting.
                tokio::task::yield_now().await;
                if f.mode == FaultMode::CutMidStream {
                    tracing::debug!(at, "cutting the stream");
                    yield Err(BodyAbort);
                    return;
                }
                match f.delay {
                    Some(d) => tokio::time::sleep(d).await,
                    None => {
                        let _ = release.wait_for(|g| *g != f.generation).await;
                    }
                }
            }
            if let Some((start, end, delay)) = pacing
                && (start..end).contains(&i)
            {
                tokio::time::sleep(delay).await;
            }
            yield Ok(frame);
        }
    }))
}
