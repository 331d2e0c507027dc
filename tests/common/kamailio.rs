//! A real Kamailio 5.6 (Debian's `kamailio` packages) in the foreground on a free loopback port
//! (UDP and TCP), with its log (stderr) in the test's work dir. Two roles:
//!
//! - [`Kamailio::start`]: the site proxy in front of the server under test,
//!   `deploy/kamailio/ivr-proxy.cfg` (IVR calls and guest REGISTERs forwarded to selfprov);
//! - [`Kamailio::registrar`]: the site's registrar for provisioned lines,
//!   `deploy/kamailio/selfprov-pbx.cfg`, on a database made from the SQL Kamailio ships
//!   ([`create_sqlite_db`], [`create_pg_schema`]).
//!
//! Both wait (bounded) until Kamailio accepts TCP connections; on drop the main process gets
//! SIGTERM (it stops its own children) and, if it is still there after 5 s, SIGKILL. If the test
//! is panicking, the tail of its log is printed.

use super::{ports, read_lossy, repo_root, require_tool, tail, wait_deadline, wait_for};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// How long Kamailio may take to listen.
const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// Kamailio's own schema files, in the order they must run.
const SCHEMA: [&str; 3] = ["standard", "auth_db", "usrloc"];

/// Creates Kamailio's tables in a new SQLite file `path` from Debian's SQL.
pub async fn create_sqlite_db(path: &Path) {
    use sqlx::sqlite::SqliteConnectOptions;
    use sqlx::{ConnectOptions, Connection};
    use std::str::FromStr;
    let mut c = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
        .unwrap()
        .create_if_missing(true)
        .connect()
        .await
        .unwrap();
    for name in SCHEMA {
        let file = format!("/usr/share/kamailio/db_sqlite/{name}-create.sql");
        let sql = std::fs::read_to_string(&file).unwrap_or_else(|e| {
            panic!("{file}: {e}: install kamailio-sqlite-modules (scripts/test.sh does)")
        });
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut c)
            .await
            .unwrap();
    }
    c.close().await.unwrap();
}

/// Creates Kamailio's tables in the PostgreSQL database at `url` from Debian's SQL.
pub async fn create_pg_schema(url: &str) {
    use sqlx::{Connection, PgConnection};
    let mut c = PgConnection::connect(url).await.unwrap();
    for name in SCHEMA {
        let file = format!("/usr/share/kamailio/postgres/{name}-create.sql");
        let sql = std::fs::read_to_string(&file).unwrap_or_else(|e| {
            panic!("{file}: {e}: install kamailio-postgres-modules (scripts/test.sh does)")
        });
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut c)
            .await
            .unwrap();
    }
    c.close().await.unwrap();
}

pub struct Kamailio {
    child: Option<Child>,
    /// Where phones send (UDP and TCP).
    pub addr: SocketAddr,
    pub log_path: PathBuf,
}

impl Kamailio {
    /// The site proxy: forwards IVR calls (`ivr_ext`) and guest REGISTERs (numbers 2000-2099)
    /// to `selfprov`, with its runtime files and log in `workdir`.
    pub fn start(selfprov: SocketAddr, ivr_ext: &str, workdir: &Path) -> Kamailio {
        Kamailio::launch(
            "ivr-proxy.cfg",
            workdir,
            &[
                format!("SELFPROV=\"sip:{selfprov}\""),
                format!("IVR_EXT=\"{ivr_ext}\""),
                "GUEST_RE=\"^20[0-9][0-9]$\"".to_string(),
            ],
        )
    }

    /// The registrar of provisioned lines on the database `db_url` (Kamailio's spelling), with
    /// extra `-A` defines (`WITH_USRLOC_DB`...).
    pub fn registrar(workdir: &Path, db_url: &str, defines: &[&str]) -> Kamailio {
        let mut all = vec![format!("DBURL=\"{db_url}\"")];
        all.extend(defines.iter().map(|d| d.to_string()));
        Kamailio::launch("selfprov-pbx.cfg", workdir, &all)
    }

    fn launch(cfg_name: &str, workdir: &Path, defines: &[String]) -> Kamailio {
        let bin = require_tool("kamailio", "kamailio");
        let port = ports::free_port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let run_dir = workdir.join(format!("kamailio-run-{port}"));
        std::fs::create_dir_all(&run_dir).expect("kamailio runtime dir");
        let log_path = workdir.join(format!("kamailio-{port}.log"));
        let log = std::fs::File::create(&log_path).expect("kamailio log");
        let cfg = repo_root().join("deploy/kamailio").join(cfg_name);
        let mut cmd = Command::new(bin);
        cmd.arg("-f")
            .arg(&cfg)
            .args(["-DD", "-E", "-m", "64", "-M", "8", "-Y"])
            .arg(&run_dir)
            .arg("-l")
            .arg(format!("udp:{addr}"))
            .arg("-l")
            .arg(format!("tcp:{addr}"));
        for d in defines {
            cmd.arg("-A").arg(d);
        }
        cmd.current_dir(workdir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log));
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        let mut k = Kamailio {
            child: Some(child),
            addr,
            log_path,
        };
        let up = wait_for(READY_TIMEOUT, || {
            if let Some(c) = k.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    panic!(
                        "kamailio exited at start ({status}):\n{}",
                        tail(&k.log(), 40)
                    );
                }
            }
            TcpStream::connect_timeout(&addr, Duration::from_millis(200))
                .ok()
                .map(|_| ())
        });
        assert!(
            up.is_some(),
            "kamailio did not listen on {addr} within {READY_TIMEOUT:?}:\n{}",
            tail(&k.log(), 40)
        );
        k
    }

    pub fn log(&self) -> String {
        read_lossy(&self.log_path)
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(pid) = i32::try_from(child.id()) {
            // SAFETY: kill(2) on the pid of our own child, which we have not reaped yet.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        if wait_deadline(&mut child, Duration::from_secs(5)).is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "---- kamailio log ({}) ----\n{}",
                self.log_path.display(),
                tail(&self.log(), 80)
            );
        }
    }
}
