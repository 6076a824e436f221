//! Runs every case of the store conformance suite against both backends, each case on a
//! fresh store: the embedded store in a temporary directory, and a real etcd server
//! (Debian's `etcd`, started by `skiff_tests::etcd` on free loopback ports with a temporary
//! data directory) that is killed when the case ends, even when it fails.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use skiff_control::store::Store;
use skiff_control::store::conformance::{CASES, Case};
use skiff_control::store::embedded::EmbeddedStore;
use skiff_control::store::etcd::EtcdStore;
use skiff_tests::etcd::EtcdServer;

/// How long one conformance case may take, waits included.
const CASE_DEADLINE: Duration = Duration::from_secs(60);

fn case(name: &str) -> Case {
    *CASES
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no conformance case named {name}"))
}

async fn run_bounded(case: Case, store: &dyn Store) {
    tokio::time::timeout(CASE_DEADLINE, (case.run)(store))
        .await
        .unwrap_or_else(|_| panic!("case {} did not finish within {CASE_DEADLINE:?}", case.name));
}

async fn run_on_embedded(name: &str) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = EmbeddedStore::open(dir.path().join("store.redb"))
        .await
        .expect("open the embedded store");
    run_bounded(case(name), &store).await;
}

async fn run_on_etcd(name: &str) {
    let server = tokio::task::spawn_blocking(EtcdServer::start)
        .await
        .expect("the etcd starter")
        .expect("a test etcd server");
    let store = EtcdStore::connect(&[server.client_url().to_string()])
        .await
        .expect("connect to etcd");
    run_bounded(case(name), &store).await;
}

/// Set in the child process of the kill -9 test: the store file it writes to.
const CRASH_CHILD_ENV: &str = "SKIFF_STORE_CRASH_CHILD";
const CRASH_TEST: &str = "embedded_store_keeps_every_acknowledged_write_through_kill_9";

/// The child: writes keys as fast as it can and prints each acknowledged revision, until it
/// is killed (or, as a bound, after 20,000 writes).
async fn acknowledge_writes_until_killed(path: PathBuf) {
    use std::io::Write;
    let store = EmbeddedStore::open(path).await.expect("open the store");
    let mut stdout = std::io::stdout().lock();
    for i in 0..20_000 {
        let key = format!("/registry/crash/{i:05}");
        let revision = store
            .create(&key, bytes::Bytes::from(key.clone()), None)
            .await
            .expect("write");
        writeln!(stdout, "ack {i} {revision}").expect("stdout");
        stdout.flush().expect("stdout");
    }
}

/// `ack <index> <revision>` from the child, if `line` has one (the test harness may have
/// printed the test's name in front of the first).
fn parse_ack(line: &str) -> Option<(usize, i64)> {
    let start = line.find("ack ")?;
    let mut fields = line[start + "ack ".len()..].split(' ');
    let index = fields.next()?.parse().ok()?;
    let revision = fields.next()?.parse().ok()?;
    Some((index, revision))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_store_keeps_every_acknowledged_write_through_kill_9() {
    use std::io::BufRead;
    if let Some(path) = std::env::var_os(CRASH_CHILD_ENV) {
        acknowledge_writes_until_killed(PathBuf::from(path)).await;
        return;
    }
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("store.redb");
    let mut child = Command::new(std::env::current_exe().expect("the test binary"))
        .args(["--exact", CRASH_TEST, "--nocapture", "--test-threads=1"])
        .env(CRASH_CHILD_ENV, &path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the writer");
    let stdout = child.stdout.take().expect("the writer's stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // Let it acknowledge a good number of writes, then kill it mid-flight.
    let mut acked: Vec<(usize, i64)> = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while acked.len() < 200 {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let Ok(line) = rx.recv_timeout(left) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the writer acknowledged only {} writes in 30 s",
                acked.len()
            );
        };
        acked.extend(parse_ack(&line));
    }
    child.kill().expect("kill -9 the writer");
    child.wait().expect("reap the writer");
    // Lines written before the kill but not yet read are acknowledgements too.
    while let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
        acked.extend(parse_ack(&line));
    }

    let indices: Vec<usize> = acked.iter().map(|(i, _)| *i).collect();
    assert_eq!(
        indices,
        (0..acked.len()).collect::<Vec<_>>(),
        "every ack was read"
    );

    let store = EmbeddedStore::open(&path)
        .await
        .expect("reopen after kill -9");
    let &(_, last) = acked.last().expect("some acknowledged writes");
    assert!(store.current_revision().await.unwrap() >= last);
    for (i, revision) in acked {
        let key = format!("/registry/crash/{i:05}");
        let kv = store
            .get(&key)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("acknowledged write {key} was lost"));
        assert_eq!(kv.mod_revision, revision);
    }
}

/// One test per case and backend: `embedded::<case>` and `etcd::<case>`.
macro_rules! conformance_tests {
    ($($case:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::run_on_embedded(stringify!($case)).await;
                }
            )*
        }

        mod etcd {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::run_on_etcd(stringify!($case)).await;
                }
            )*
        }

        #[test]
        fn every_conformance_case_runs_against_both_backends() {
            let listed: Vec<&str> = vec![$(stringify!($case)),*];
            let suite: Vec<&str> = CASES.iter().map(|c| c.name).collect();
            assert_eq!(listed, suite, "list every case of the suite in this file");
        }
    };
}

conformance_tests!(
    create_then_get_returns_the_value_and_its_revisions,
    creating_an_existing_key_fails_with_already_exists,
    update_with_the_expected_revision_replaces_the_value,
    update_with_a_stale_revision_fails_with_conflict,
    update_without_an_expected_revision_overwrites,
    missing_keys_report_not_found,
    delete_returns_the_previous_value_and_the_new_revision,
    every_write_advances_the_revision_by_exactly_one,
    range_returns_the_keys_under_a_prefix_sorted_by_key,
    paging_with_limit_and_continue_reads_one_snapshot,
    range_at_a_past_revision_returns_the_state_then,
    reads_before_the_compaction_point_fail_with_compacted,
    watch_from_a_revision_replays_later_events_in_order,
    watch_sees_only_its_prefix,
    watch_moves_from_history_to_live_events_without_gaps_or_duplicates,
    watch_from_a_compacted_revision_fails_with_compacted,
    lease_expiry_deletes_attached_keys_and_emits_delete_events,
    revoking_a_lease_deletes_its_keys_and_ends_the_lease,
    keep_alive_holds_a_lease_open,
    invalid_arguments_are_rejected,
);
