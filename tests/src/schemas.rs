//! TODO area schemas

#[doc(hidden)]
#[macro_export]
macro_rules! __contract_schemas {
    ($harness:expr) => {};
}
