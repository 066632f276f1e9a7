//! TODO area isolation

#[doc(hidden)]
#[macro_export]
macro_rules! __contract_isolation {
    ($harness:expr) => {};
}
