//! Filled in with the types module.
