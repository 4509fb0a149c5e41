//! The request path's door to the local engine: picks the model, calls `local::serve`, and
//! records the exchange the same way cloud answers are recorded (through the tee).

use std::sync::Arc;
use std::time::Instant;

use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder};
use bytes::Bytes;
use genset_engine::{Engine, EngineRegistry, Priority};

use crate::api::error::{ApiError, ErrorKind};
use crate::local::{LocalBody, LocalEndpoint, explicit_model};
use crate::proxy::Endpoint;
use crate::proxy::tee::Tee;
use crate::record::{Capture, Ending, Exchange, Recorder};

pub struct LocalRoute {
    pub registry: EngineRegistry,
}

impl LocalRoute {
    /// The engine a request names: `local/<name>` in its model field, or (with
    /// `x-genset-route: local`) the model field itself when it names a local model, else the
    /// first configured model.
    fn pick(&self, model: Option<&str>) -> Result<Arc<dyn Engine>, ApiError> {
        if let Some(name) = model.and_then(explicit_model) {
            return self.registry.get(name).ok_or_else(|| {
                ApiError::new(
                    ErrorKind::NotFound,
                    format!("no local model named {name:?}; configured: {}", self.registry.names().join(", ")),
                )
                .with_code("model_not_found")
                .with_param("model")
            });
        }
        if let Some(e) = model.and_then(|m| self.registry.get(m)) {
            return Ok(e);
        }
        self.registry.list().into_iter().next().ok_or_else(|| {
            ApiError::new(ErrorKind::UpstreamUnavailable, "no local models are configured ([[models]])").with_code("no_local_model")
        })
    }

    pub async fn serve(
        &self,
        _req: &HttpRequest,
        ep: Endpoint,
        body: Bytes,
        mut ex: Exchange,
        started: Instant,
        recorder: Recorder,
    ) -> HttpResponse {
        let reject = |ex: Exchange, err: ApiError| crate::proxy::reject(ex, started, &recorder, err);
        let engine = match self.pick(ex.model.as_deref()) {
            Ok(e) => e,
            Err(e) => return reject(ex, e),
        };
        ex.served_by = Arc::from(crate::local::served_by(engine.as_ref()));
        let Some(endpoint) = LocalEndpoint::from_path(ep.path) else {
            let e = ApiError::invalid(format!("{} is not served by local models", ep.path)).with_code("unsupported_endpoint");
            return reject(ex, e);
        };
        let value: serde_json::Value = match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => return reject(ex, ApiError::invalid(format!("the request body is not valid JSON: {e}"))),
        };
        let resp = match crate::local::serve(engine, endpoint, &value, Priority::Live).await {
            Ok(r) => r,
            Err(e) => return reject(ex, e),
        };
        ex.status = resp.status;
        ex.sse = resp.content_type.starts_with("text/event-stream");
        let mut b = HttpResponseBuilder::new(actix_web::http::StatusCode::from_u16(resp.status).unwrap_or(actix_web::http::StatusCode::OK));
        b.content_type(resp.content_type);
        b.insert_header(("x-genset-served-by", &*ex.served_by));
        b.insert_header(("x-genset-use-case", &*ex.use_case));
        match resp.body {
            LocalBody::Full(bytes) => {
                ex.response = Capture::from_bytes(bytes.clone(), recorder.body_cap());
                ex.ttfb = Some(started.elapsed());
                ex.total = started.elapsed();
                ex.ending = Ending::Delivered;
                recorder.record(ex);
                b.body(bytes)
            }
            LocalBody::Stream(s) => b.streaming(Tee::new(s, ex, recorder, started)),
        }
    }
}
