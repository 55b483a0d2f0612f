//! Nested test host fixture.
