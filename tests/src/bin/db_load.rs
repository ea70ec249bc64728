//! Load driver for the database backends: the same workload on each backend named on the command
//! line, then the session check through `CachedDatabase` on the memory cache against Redis.
//!
//! Per backend, each phase timed: servers created on one node from a few tasks, every page of
//! the server list, a subuser's reads of one server (`get`, `relation`, `global_permissions`)
//! from many tasks at once, and as many racers as a fresh node has free ports creating a server
//! each at the same moment. Prints one table with the backends side by side.
//!
//! ```sh
//! psql -h 127.0.0.1 -U postgres -c 'DROP DATABASE IF EXISTS cap_bench' -c 'CREATE DATABASE cap_bench'
//! mariadb -h 127.0.0.1 -u root -e 'DROP DATABASE IF EXISTS cap_bench; CREATE DATABASE cap_bench'
//! secantusd-py --host 127.0.0.1 --port 27201 --storage-path :memory: &
//! nx-27017 --db memory --host 127.0.0.1 -p 27202 --log-file /tmp/nx.log --pid-file /tmp/nx.pid &
//! cargo build --release -p cap-tests --bin db_load
//! ./target/release/db_load --backend sqlite=sqlite:///tmp/cap_bench.db \
//!     --backend postgres=postgres://postgres@127.0.0.1:5432/cap_bench \
//!     --backend mariadb=mysql://root@127.0.0.1:3306/cap_bench \
//!     --backend secantus=mongodb://127.0.0.1:27201/cap_bench \
//!     --backend nx-27017=mongodb://127.0.0.1:27202/cap_bench \
//!     [--backend sqlite-one-pool=sqlite-one-pool+sqlite:///tmp/cap_bench_one_pool.db] \
//!     [--servers 10000] [--create-tasks 8] [--readers 1000] [--read-rounds 5] [--racers 100] \
//!     [--secs 3] [--session-tasks 16] [--redis-url redis://127.0.0.1:6379]
//! ```
//!
//! Each backend's store is emptied first (`migrate`, then `clear_rows`): point it at a scratch
//! database, and recreate it between runs to compare runs (emptied tables keep their dead rows
//! until a vacuum). A failed operation ends that backend's run: its later phases show `-`, the
//! error is printed under the table and the exit status is 1; the race also checks that no two
//! winners hold the same `ip:port`. The Redis URL defaults to `CAP_TEST_REDIS_URL`, then
//! `redis://127.0.0.1:6379`; without a Redis only the memory-cache session figures are printed.

use capauth::{AuthConfig, CapAuthenticator, MemoryCache, PasswordConfig, RedisCache, RedisCacheConfig};
use capcore::backend::{Authenticator, Cache, Credential, Database, LoginRequest};
use capcore::ids::{NodeId, ServerId, TemplateId, UserId};
use capcore::model::{AllocationRequest, Limits, NewNode, NewRole, NewServer, NewUser, PageRequest, ServerFilter};
use capcore::permission::{Permission, PermissionSet, ServerRelation};
use capcore::template::TemplateSpec;
use capcore::time::Timestamp;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::Barrier;

struct Args {
    /// `(name, url)` in the order given.
    backends: Vec<(String, String)>,
    servers: usize,
    create_tasks: usize,
    readers: usize,
    read_rounds: usize,
    racers: usize,
    secs: u64,
    session_tasks: usize,
    redis_url: String,
}

fn args() -> Args {
    let redis_url = std::env::var("CAP_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let mut a = Args {
        backends: Vec::new(),
        servers: 10_000,
        create_tasks: 8,
        readers: 1_000,
        read_rounds: 5,
        racers: 100,
        secs: 3,
        session_tasks: 16,
        redis_url,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--backend" => {
                let (name, url) = value.split_once('=').unwrap_or_else(|| panic!("--backend wants NAME=URL"));
                a.backends.push((name.to_string(), url.to_string()));
            }
            "--servers" => a.servers = value.parse().expect("--servers"),
            "--create-tasks" => a.create_tasks = value.parse().expect("--create-tasks"),
            "--readers" => a.readers = value.parse().expect("--readers"),
            "--read-rounds" => a.read_rounds = value.parse().expect("--read-rounds"),
            "--racers" => a.racers = value.parse().expect("--racers"),
            "--secs" => a.secs = value.parse().expect("--secs"),
            "--session-tasks" => a.session_tasks = value.parse().expect("--session-tasks"),
            "--redis-url" => a.redis_url = value,
            other => panic!("unknown flag {other}"),
        }
    }
    assert!((1..=20_000).contains(&a.servers), "--servers: 1 to 20000 (the ports of one node)");
    assert!(a.racers >= 1 && a.readers >= 1 && a.create_tasks >= 1, "--racers, --readers, --create-tasks: at least 1");
    assert!(a.racers <= 1_000, "--racers: at most 1000");
    a
}

fn now() -> Timestamp {
    Timestamp::from_millis(SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_millis() as i64)
}

/// Latencies of one phase, sorted, and its wall time.
struct Timed {
    wall: Duration,
    latencies: Vec<Duration>,
}

impl Timed {
    fn new(wall: Duration, mut latencies: Vec<Duration>) -> Self {
        latencies.sort_unstable();
        Self { wall, latencies }
    }
    fn per_sec(&self) -> f64 {
        self.latencies.len() as f64 / self.wall.as_secs_f64()
    }
    fn ms(&self, p: f64) -> f64 {
        let i = ((self.latencies.len() - 1) as f64 * p).round() as usize;
        self.latencies[i].as_secs_f64() * 1e3
    }
}

/// What one backend measured; a phase that did not run (an earlier one failed) is `None`.
#[derive(Default)]
struct BackendRun {
    allocations_add: Option<Duration>,
    create: Option<Timed>,
    /// Servers a second over the first and over the last tenth of the creations: each
    /// creation on a node sums the memory of the servers already on it.
    create_first_last_rate: Option<(f64, f64)>,
    list: Option<Timed>,
    /// The list's first and last page: an offset walk may pay more the deeper it goes.
    list_first_last: Option<(Duration, Duration)>,
    reads: Option<Timed>,
    race: Option<Timed>,
    /// Why the run stopped early.
    failure: Option<String>,
}

const LIMITS: Limits = Limits { memory_mb: 64, swap_mb: 0, cpu_percent: 100, disk_mb: 128, io_weight: 500, pids: 64 };

fn template_spec() -> TemplateSpec {
    serde_json::from_value(serde_json::json!({
        "name": "bench",
        "startup": "./game --port {{SERVER_PORT}} --greeting {{GREETING}}",
        "stop": {"type": "command", "value": "stop"},
        "variables": [
            {"name": "Greeting", "env": "GREETING", "default": "hello", "rules": "required|string|max:32"}
        ],
        "ready_patterns": [{"type": "contains", "value": "ready"}]
    }))
    .expect("template spec")
}

fn new_node(name: &str, n_servers: usize) -> NewNode {
    // Memory and disk for exactly `n_servers`, so the capacity check runs and never refuses.
    let servers = n_servers as i64;
    NewNode {
        name: name.to_string(),
        description: "db_load".to_string(),
        fqdn: format!("{name}.example.test"),
        memory_mb: servers * LIMITS.memory_mb,
        memory_overallocate: 0,
        disk_mb: servers * LIMITS.disk_mb,
        disk_overallocate: 0,
        token_hash: format!("db-load-{name}-{}", std::process::id()),
    }
}

fn new_server(name: String, owner: UserId, node: NodeId, template: TemplateId) -> NewServer {
    NewServer {
        name,
        description: String::new(),
        owner_id: owner,
        node_id: node,
        template_id: template,
        limits: LIMITS,
        environment: BTreeMap::from([("GREETING".to_string(), "hello".to_string())]),
        allocation: AllocationRequest::AnyFree,
    }
}

async fn new_user(db: &dyn Database, name: &str) -> Result<UserId, String> {
    let user = NewUser {
        username: name.to_string(),
        email: format!("{name}@example.test"),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$ZGJsb2Fk$0XwGgk6pY1CkFqGQ0cVh3w".to_string(),
    };
    Ok(db.users().create(user, now()).await.map_err(failed("create user"))?.id)
}

/// Runs the workload on one backend; `label` names it in progress lines. A failed operation
/// ends the run of that backend and is kept in `failure`.
async fn run_backend(label: &str, db: Arc<dyn Database>, a: &Args) -> BackendRun {
    let mut run = BackendRun::default();
    if let Err(e) = run_phases(label, db, a, &mut run).await {
        eprintln!("{label}: FAILED: {e}");
        run.failure = Some(e);
    }
    run
}

fn failed(what: impl std::fmt::Display) -> impl FnOnce(capcore::Error) -> String {
    move |e| format!("{what}: {e}")
}

async fn run_phases(label: &str, db: Arc<dyn Database>, a: &Args, run: &mut BackendRun) -> Result<(), String> {
    db.migrate().await.map_err(failed("migrate"))?;
    db.clear_rows().await.map_err(failed("clear_rows"))?;
    let owner = new_user(&*db, "owner").await?;
    let subuser = new_user(&*db, "subuser").await?;
    let role = NewRole {
        name: "bench".to_string(),
        description: String::new(),
        permissions: [Permission::SERVER_VIEW, Permission::SERVER_CREATE].into_iter().collect(),
        builtin: false,
    };
    let role = db.roles().create(role, now()).await.map_err(failed("create role"))?;
    db.roles().assign(subuser, role.id).await.map_err(failed("assign role"))?;
    let template = db.templates().create(template_spec(), now()).await.map_err(failed("create template"))?.id;
    let node = db.nodes().create(new_node("bulk", a.servers), now()).await.map_err(failed("create node"))?.id;

    // 1. Allocations in chunks, then servers from a few tasks.
    let started = Instant::now();
    let ports: Vec<u16> = (0..a.servers + 16).map(|i| 20_000 + i as u16).collect();
    for chunk in ports.chunks(1_000) {
        db.allocations().add(node, "10.0.0.1", chunk).await.map_err(failed("add allocations"))?;
    }
    run.allocations_add = Some(started.elapsed());
    eprintln!("{label}: {} allocations added in {:.2?}", ports.len(), started.elapsed());

    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let creators = (0..a.create_tasks).map(|_| {
        let (db, next, n_servers) = (db.clone(), next.clone(), a.servers);
        tokio::spawn(async move {
            let mut done = Vec::new();
            loop {
                let server_idx = next.fetch_add(1, Ordering::Relaxed);
                if server_idx >= n_servers {
                    return Ok(done);
                }
                let new = new_server(format!("server {server_idx:05}"), owner, node, template);
                let t = Instant::now();
                if let Err(e) = db.servers().create(new, now()).await {
                    // The other creators stop at their next server.
                    next.store(usize::MAX / 2, Ordering::Relaxed);
                    return Err(format!("create server {server_idx} of {n_servers}: {e}"));
                }
                done.push((Instant::now(), t.elapsed()));
            }
        })
    });
    let mut done = Vec::new();
    let mut first_error = None;
    for creator in creators.collect::<Vec<_>>() {
        match creator.await.expect("creator") {
            Ok(d) => done.extend(d),
            Err(e) => first_error = first_error.or(Some(e)),
        }
    }
    if let Some(e) = first_error {
        return Err(format!("{e} ({} created before)", done.len()));
    }
    let wall = started.elapsed();
    let mut finished: Vec<Instant> = done.iter().map(|(at, _)| *at).collect();
    finished.sort_unstable();
    let tenth = (a.servers / 10).max(1);
    let first_tenth = finished[tenth - 1] - started;
    let last_tenth = finished[finished.len() - 1] - finished[finished.len() - 1 - tenth];
    run.create_first_last_rate =
        Some((tenth as f64 / first_tenth.as_secs_f64(), tenth as f64 / last_tenth.as_secs_f64()));
    run.create = Some(Timed::new(wall, done.into_iter().map(|(_, latency)| latency).collect()));
    eprintln!("{label}: {} servers created in {wall:.2?}", a.servers);

    // 2. Every page of the unfiltered list, 100 a page.
    let started = Instant::now();
    let mut latencies = Vec::new();
    let mut seen = 0u64;
    let mut first: Option<ServerId> = None;
    for page in 1.. {
        let t = Instant::now();
        let got = db
            .servers()
            .list(&ServerFilter::default(), PageRequest::new(page, 100))
            .await
            .map_err(failed(format!("list page {page}")))?;
        latencies.push(t.elapsed());
        if got.total != a.servers as u64 {
            return Err(format!("list page {page}: total {} instead of {}", got.total, a.servers));
        }
        first = first.or(got.items.first().map(|s| s.id));
        seen += got.items.len() as u64;
        if got.items.len() < 100 || seen >= got.total {
            break;
        }
    }
    if seen != a.servers as u64 {
        return Err(format!("the list walk saw {seen} servers instead of {}", a.servers));
    }
    run.list_first_last = Some((latencies[0], latencies[latencies.len() - 1]));
    let list = Timed::new(started.elapsed(), latencies);
    eprintln!("{label}: {} pages walked in {:.2?}", list.latencies.len(), list.wall);
    run.list = Some(list);

    // 3. A subuser's view of one server, from many tasks at once.
    let server = first.ok_or("the list is empty")?;
    let grant: PermissionSet = [Permission::SERVER_VIEW].into_iter().collect();
    db.servers().set_subuser(server, subuser, grant, now()).await.map_err(failed("set subuser"))?;
    let mut latencies = Vec::new();
    let mut wall = Duration::ZERO;
    for _ in 0..a.read_rounds {
        let barrier = Arc::new(Barrier::new(a.readers));
        let started = Instant::now();
        let readers = (0..a.readers).map(|_| {
            let (db, barrier) = (db.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                let t = Instant::now();
                let got = db.servers().get(server).await.map_err(failed("get server"))?;
                let relation = db.servers().relation(server, subuser).await.map_err(failed("relation"))?;
                let global = db.roles().global_permissions(subuser).await.map_err(failed("global permissions"))?;
                let elapsed = t.elapsed();
                if got.id != server
                    || relation != ServerRelation::Subuser(grant)
                    || !global.contains(Permission::SERVER_CREATE)
                {
                    return Err(format!("wrong read: {:?}, {relation:?}, {global:?}", got.id));
                }
                Ok(elapsed)
            })
        });
        for reader in readers.collect::<Vec<_>>() {
            latencies.push(reader.await.expect("reader")?);
        }
        wall += started.elapsed();
    }
    let reads = Timed::new(wall, latencies);
    eprintln!("{label}: {} reads in {:.2?}", reads.latencies.len(), reads.wall);
    run.reads = Some(reads);

    // 4. Racers for the free ports of a fresh node with exactly as many ports as racers.
    let race_node =
        db.nodes().create(new_node("race", a.racers + 1), now()).await.map_err(failed("create race node"))?.id;
    let race_ports: Vec<u16> = (0..a.racers).map(|i| 40_000 + i as u16).collect();
    db.allocations().add(race_node, "10.0.0.2", &race_ports).await.map_err(failed("add race allocations"))?;
    let barrier = Arc::new(Barrier::new(a.racers));
    let started = Instant::now();
    let racers = (0..a.racers).map(|racer_idx| {
        let (db, barrier) = (db.clone(), barrier.clone());
        tokio::spawn(async move {
            barrier.wait().await;
            let t = Instant::now();
            let result = db
                .servers()
                .create(new_server(format!("racer {racer_idx:03}"), owner, race_node, template), now())
                .await;
            (t.elapsed(), result)
        })
    });
    let mut latencies = Vec::new();
    let mut winners = Vec::new();
    let mut errors = Vec::new();
    for racer in racers.collect::<Vec<_>>() {
        let (elapsed, result) = racer.await.expect("racer");
        latencies.push(elapsed);
        match result {
            Ok(server) => winners.push(server.id),
            Err(e) => errors.push(e),
        }
    }
    let race = Timed::new(started.elapsed(), latencies);
    // Whatever else went wrong, no two winners may share a port.
    let mut taken = HashSet::new();
    for server in &winners {
        let held = db.allocations().list_for_server(*server).await.map_err(failed("list_for_server"))?;
        if held.len() != 1 {
            return Err(format!("racer server {server} holds {} allocations instead of 1", held.len()));
        }
        for allocation in held {
            let key = format!("{}:{}", allocation.ip, allocation.port);
            if allocation.node_id != race_node || !allocation.primary || !taken.insert(key.clone()) {
                return Err(format!("ALLOCATION HANDED OUT TWICE OR WRONG: {key} ({allocation:?})"));
            }
        }
    }
    if let Some(e) = errors.first() {
        return Err(format!(
            "{} of {} racers failed with a free port for each (the {} that succeeded got distinct ports); the first: {e}",
            errors.len(),
            a.racers,
            winners.len()
        ));
    }
    if taken.len() != a.racers {
        return Err(format!("{} distinct ports for {} racers", taken.len(), a.racers));
    }
    let one_more = db.servers().create(new_server("one too many".into(), owner, race_node, template), now()).await;
    if !matches!(one_more, Err(capcore::Error::Conflict { .. })) {
        return Err(format!("a create on a node with no free port must be Conflict, got {one_more:?}"));
    }
    eprintln!("{label}: {} racers got {} distinct ports in {:.2?}", a.racers, taken.len(), race.wall);
    run.race = Some(race);
    Ok(())
}

/// The session check as `cap-panel` wires it: `CachedDatabase` over SQLite, the given cache
/// shared by it and the authenticator, access tokens verified from `tasks` tasks for `secs`.
async fn run_sessions(cache: Arc<dyn Cache>, cached: bool, a: &Args) -> Timed {
    let url = format!("sqlite://{}", cap_tests::scratch_db_path("db-load-sessions").display());
    let store = capdb::connect(&url, &capdb::DbConfig { max_connections: 16, ..Default::default() })
        .await
        .expect("open sqlite");
    store.migrate().await.expect("migrate");
    let db: Arc<dyn Database> = if cached {
        Arc::new(capdb::CachedDatabase::new(store, cache.clone(), capdb::CachedDatabaseConfig::default()))
    } else {
        store
    };
    let mut config = AuthConfig::with_secret(b"db_load secret, at least thirty-two bytes".to_vec());
    // Hashing is not what is measured; one login needs one hash.
    config.password = PasswordConfig { memory_kib: 1024, iterations: 1, parallelism: 1 };
    let auth = Arc::new(CapAuthenticator::new(db.clone(), cache, config).expect("authenticator"));
    let hash = auth.hash_password("db load password").await.expect("hash");
    let user = NewUser { username: "sessions".into(), email: "sessions@example.test".into(), password_hash: hash };
    let user = db.users().create(user, now()).await.expect("create user");
    let role = NewRole {
        name: "sessions".into(),
        description: String::new(),
        permissions: PermissionSet::all(),
        builtin: false,
    };
    let role = db.roles().create(role, now()).await.expect("create role");
    db.roles().assign(user.id, role.id).await.expect("assign role");
    let login = LoginRequest {
        email: "sessions@example.test".into(),
        password: "db load password".into(),
        totp: None,
        ip: "127.0.0.1".into(),
    };
    let session = auth.login(login, now()).await.expect("login");
    let token = Arc::new(session.access_token);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(a.secs);
    let workers = (0..a.session_tasks).map(|_| {
        let (auth, token) = (auth.clone(), token.clone());
        tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(100_000);
            while Instant::now() < deadline {
                let t = Instant::now();
                let principal = auth.authenticate(Credential::AccessToken(&token), now()).await.expect("authenticate");
                latencies.push(t.elapsed());
                assert_eq!(principal.user_id, user.id);
            }
            latencies
        })
    });
    let mut latencies = Vec::new();
    for worker in workers.collect::<Vec<_>>() {
        latencies.extend(worker.await.expect("worker"));
    }
    Timed::new(started.elapsed(), latencies)
}

fn print_table(a: &Args, runs: &[(String, BackendRun)]) {
    let header: Vec<&str> = runs.iter().map(|(name, _)| name.as_str()).collect();
    println!();
    println!("| | {} |", header.join(" | "));
    println!("|---|{}", "---:|".repeat(runs.len()));
    // A phase that did not run shows a dash.
    let row = |what: String, f: &dyn Fn(&BackendRun) -> Option<String>| {
        let cells: Vec<String> = runs.iter().map(|(_, run)| f(run).unwrap_or_else(|| "-".into())).collect();
        println!("| {what} | {} |", cells.join(" | "));
    };
    let n_allocations = a.servers + 16;
    row(format!("add {n_allocations} allocations, 1000 a call: s"), &|r| {
        r.allocations_add.map(|d| format!("{:.2}", d.as_secs_f64()))
    });
    let (servers, tasks) = (a.servers, a.create_tasks);
    row(format!("create {servers} servers on one node, {tasks} tasks: s"), &|r| {
        r.create.as_ref().map(|t| format!("{:.1}", t.wall.as_secs_f64()))
    });
    row("create: servers/s".into(), &|r| r.create.as_ref().map(|t| format!("{:.0}", t.per_sec())));
    row("create: servers/s over the first / last tenth".into(), &|r| {
        r.create_first_last_rate.map(|(first, last)| format!("{first:.0} / {last:.0}"))
    });
    row("create: p50 / p99 ms".into(), &|r| {
        r.create.as_ref().map(|t| format!("{:.2} / {:.2}", t.ms(0.50), t.ms(0.99)))
    });
    row(format!("list walk, {} pages of 100: s", servers.div_ceil(100)), &|r| {
        r.list.as_ref().map(|t| format!("{:.2}", t.wall.as_secs_f64()))
    });
    row("list: pages/s".into(), &|r| r.list.as_ref().map(|t| format!("{:.0}", t.per_sec())));
    row("list: p50 / p99 ms a page".into(), &|r| {
        r.list.as_ref().map(|t| format!("{:.2} / {:.2}", t.ms(0.50), t.ms(0.99)))
    });
    row("list: first / last page ms".into(), &|r| {
        r.list_first_last
            .map(|(first, last)| format!("{:.2} / {:.2}", first.as_secs_f64() * 1e3, last.as_secs_f64() * 1e3))
    });
    let (readers, rounds) = (a.readers, a.read_rounds);
    row(format!("subuser reads, {readers} at once x {rounds}: reads/s"), &|r| {
        r.reads.as_ref().map(|t| format!("{:.0}", t.per_sec()))
    });
    row("reads: p50 / p99 ms".into(), &|r| r.reads.as_ref().map(|t| format!("{:.1} / {:.1}", t.ms(0.50), t.ms(0.99))));
    let racers = a.racers;
    row(format!("{racers} racers for {racers} free ports: wall ms"), &|r| {
        r.race.as_ref().map(|t| format!("{:.0}", t.wall.as_secs_f64() * 1e3))
    });
    row("race: p50 / p99 ms".into(), &|r| r.race.as_ref().map(|t| format!("{:.1} / {:.1}", t.ms(0.50), t.ms(0.99))));
    row("race: every racer got its own port".into(), &|r| r.race.as_ref().map(|_| "yes".into()));
    for (name, run) in runs {
        if let Some(e) = &run.failure {
            println!("\n{name}: FAILED: {e}");
        }
    }
}

#[tokio::main]
async fn main() {
    let a = args();
    let config = capdb::DbConfig { max_connections: 16, ..Default::default() };
    let mut runs = Vec::new();
    for (name, url) in &a.backends {
        // `sqlite-one-pool+sqlite://...`: SQLite writing through its reading pool, as before it
        // had a connection of its own for writes; the baseline for that change.
        let (one_pool, url) = match url.strip_prefix("sqlite-one-pool+") {
            Some(url) => (true, url),
            None => (false, url.as_str()),
        };
        let db = capdb::connect(url, &config).await.unwrap_or_else(|e| panic!("{name}: cannot connect to {url}: {e}"));
        let db: Arc<dyn Database> = if one_pool {
            let sqlite = capdb::sqlite::SqliteDatabase::connect(url, &config).await.unwrap();
            Arc::new(capdb::sqlite::SqliteDatabase::from_pool(sqlite.pool().clone()))
        } else {
            db
        };
        eprintln!("{name}: connected ({})", db.backend_name());
        let run = run_backend(name, db, &a).await;
        runs.push((name.clone(), run));
    }
    if !runs.is_empty() {
        print_table(&a, &runs);
    }
    let any_failed = runs.iter().any(|(_, run)| run.failure.is_some());

    println!();
    println!("session check (CachedDatabase over SQLite, {} tasks, {} s):", a.session_tasks, a.secs);
    let memory = run_sessions(Arc::new(MemoryCache::default()), true, &a).await;
    print_sessions("memory cache", &memory);
    let prefix = format!("cap-db-load:{}:", std::process::id());
    let redis_config = RedisCacheConfig { key_prefix: prefix, ..RedisCacheConfig::default() };
    match RedisCache::connect(&a.redis_url, redis_config).await {
        Ok(redis) => print_sessions("redis cache", &run_sessions(Arc::new(redis), true, &a).await),
        Err(e) => println!("redis cache: not measured: {e}"),
    }
    let uncached = run_sessions(Arc::new(MemoryCache::default()), false, &a).await;
    print_sessions("no CachedDatabase (every check reads SQLite)", &uncached);
    if any_failed {
        std::process::exit(1);
    }
}

fn print_sessions(what: &str, timed: &Timed) {
    println!(
        "  {what:<46} {:>9.0} checks/s  p50 {:>7.1} us  p99 {:>7.1} us",
        timed.per_sec(),
        timed.ms(0.50) * 1e3,
        timed.ms(0.99) * 1e3,
    );
}
