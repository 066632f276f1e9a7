//! TODO area cursors

#[doc(hidden)]
#[macro_export]
macro_rules! __contract_cursors {
    ($harness:expr) => {};
}
