//! The longer `devstack` commands, one module each (the command line itself,
//! its arguments and the short commands are in `main.rs`).

pub(crate) mod events;
pub(crate) mod token;
