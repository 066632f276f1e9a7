//! TODO area validation

#[doc(hidden)]
#[macro_export]
macro_rules! __contract_validation {
    ($harness:expr) => {};
}
