//! Types shared by the inbound API surfaces (cloud pass-through and local serving).
pub mod error;
