//! Guest architecture setup.
