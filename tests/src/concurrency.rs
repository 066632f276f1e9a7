//! TODO area concurrency

#[doc(hidden)]
#[macro_export]
macro_rules! __contract_concurrency {
    ($harness:expr) => {};
}
