//! The contract suite again, as a role that is not a superuser, may not create roles or
//! databases, and owns only its own database — what an application role on RDS is. The
//! migrations and every statement of the catalog must need nothing more
//! (created once on the shared server by [`unprivileged`]).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use hakiri_catalog_postgres::{PostgresCatalog, PostgresConfig};
use hakiri_contract::Harness;
use hakiri_core::{Catalog, ProjectId};
use hakiri_test_kit::postgres;
use sqlx::ConnectOptions as _;

/// The role [`unprivileged`] logs in as, and the database it owns.
const APP_ROLE: &str = "hakiri_test_app";

/// The URL of a login role that is neither a superuser nor allowed to create roles or databases,
/// and owns one database of the shared server — what an application role on RDS is — with the
/// catalog migrated by that role. Created once and reused (a server given through
/// `HAKIRI_TEST_POSTGRES_URL` keeps one role and one database, not one per run).
///
/// # Panics
/// With the reason, when the shared server's user may not create the role or the database.
pub fn unprivileged() -> &'static str {
    static URL: OnceLock<Result<String, String>> = OnceLock::new();
    let url = URL.get_or_init(|| {
        let admin = postgres::shared().url().to_owned();
        std::thread::spawn(move || {
            let url = create_app_role(&admin)?;
            postgres::migrate(&url)?;
            Ok(url)
        })
        .join()
        .unwrap_or_else(|_| Err("creating the application role panicked".to_owned()))
    });
    match url {
        Ok(url) => url,
        Err(message) => panic!("{message}"),
    }
}

fn create_app_role(admin: &str) -> Result<String, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let config = PostgresConfig::default().max_connections(1);
        let pool = config.connect(admin).await.map_err(|e| {
            format!(
                "cannot connect to {admin}: {e}. {}",
                postgres::HOW_TO_GET_ONE
            )
        })?;
        let cannot = |what: &str, e: sqlx::Error| {
            format!(
                "cannot create the test's {what} {APP_ROLE} on {admin} \
                 (its user needs CREATEROLE and CREATEDB): {e}"
            )
        };
        let exists = |sql: &'static str| {
            let pool = pool.clone();
            async move {
                sqlx::query_scalar::<_, bool>(sql)
                    .bind(APP_ROLE)
                    .fetch_one(&pool)
                    .await
            }
        };
        let role = exists("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)")
            .await
            .map_err(|e| cannot("role", e))?;
        if !role {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "CREATE ROLE {APP_ROLE} LOGIN PASSWORD '{APP_ROLE}' \
                 NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS"
            )))
            .execute(&pool)
            .await
            .map_err(|e| cannot("role", e))?;
        }
        let database = exists("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .await
            .map_err(|e| cannot("database", e))?;
        if !database {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "CREATE DATABASE {APP_ROLE} OWNER {APP_ROLE}"
            )))
            .execute(&pool)
            .await
            .map_err(|e| cannot("database", e))?;
        }
        pool.close().await;
        let url = config
            .connect_options(admin)
            .map_err(|e| e.to_string())?
            .username(APP_ROLE)
            .password(APP_ROLE)
            .database(APP_ROLE)
            .to_url_lossy();
        Ok(url.to_string())
    })
}

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
        .connect(unprivileged())
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
    url: unprivileged(),
});
