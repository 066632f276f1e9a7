//! TODO area events

#[doc(hidden)]
#[macro_export]
macro_rules! __contract_events {
    ($harness:expr) => {};
}
