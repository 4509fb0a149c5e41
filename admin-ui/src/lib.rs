//! genset admin console.
