//! TODO area runs

#[doc(hidden)]
#[macro_export]
macro_rules! __contract_runs {
    ($harness:expr) => {};
}
