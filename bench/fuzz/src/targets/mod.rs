//! One module per decoder family.

pub mod jwt;
pub mod oneway;
pub mod protocol;
pub mod session;
pub mod stomp;
pub mod turn;
