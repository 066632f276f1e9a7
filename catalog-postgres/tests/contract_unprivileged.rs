//! The contract suite again, as a role that is not a superuser, may not create roles or
//! databases, and owns only its own database — what an application role on RDS is. The
//! migrations and every statement of the catalog must need nothing more
//! (see `support/postgres.rs`, [`postgres::unprivileged`]).

#[path = "support/postgres.rs"]
mod postgres;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use hakiri_catalog_postgres::{PostgresCatalog, PostgresConfig};
use hakiri_contract::Harness;
use hakiri_core::{Catalog, ProjectId};

struct UnprivilegedHarness {
    url: &'static str,
}

#[async_trait]
impl Harness for UnprivilegedHarness {
    async fn open(&self, project: &ProjectId) -> Arc<dyn Catalog> {
        let pool = PostgresConfig::default()
            .max_connections(8)
            .connect(self.url)
            .await
            .unwrap_or_else(|e| panic!("connect as the application role: {e}"));
        Arc::new(PostgresCatalog::new(pool, project.clone()))
    }

    async fn advance(&self, by: Duration) {
        tokio::time::sleep(by).await;
    }

    fn ttl(&self) -> Duration {
        Duration::from_secs(2)
    }
}

#[tokio::test]
async fn the_application_role_is_neither_superuser_nor_owner_of_the_server() {
    let pool = PostgresConfig::default()
        .max_connections(1)
        .connect(postgres::unprivileged())
        .await
        .unwrap();
    let (superuser, create_role, create_db): (bool, bool, bool) = sqlx::query_as(
        "SELECT rolsuper, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = current_user",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((superuser, create_role, create_db), (false, false, false));
}

hakiri_contract::contract_suite!(UnprivilegedHarness {
    url: postgres::unprivileged(),
});
