//! OpenAI <-> Anthropic format translation and SSE stream decoding/encoding for genset's fallback chain
