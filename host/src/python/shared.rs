//! Sessions that replicas share through Redis (`witbox serve --store
//! redis://HOST:PORT/N`): every replica can serve every session.
//!
//! In Redis, session `ID` is a hash `witbox:session:ID` (`snap`: its snapshot,
//! `gen`: how many times it was saved, `owner`: the principal that made it,
//! empty for none), expiring after the session TTL of idleness;
//! `witbox:owner:P` is the set of principal `P`'s sessions; `witbox:lease:ID`
//! names the replica (and which of its calls) running a call on session `ID`. A replica takes the lease before a call
//! (waiting while another holds it), renews it while the call runs, saves the
//! session while it still holds it (a replica that lost its lease, say paused
//! for longer than [`LEASE`], cannot overwrite a newer state), and lets it go.
//! What a replica holds in memory is a cache: when the store's `gen` is not the
//! one it last saw, it restores the session from the store first. So a replica
//! killed with `kill -9` loses at most the cell it was running, and its
//! sessions are served by another one at once, or within [`LEASE`] for the one
//! whose cell it was running.
//!
//! Snapshots are sealed with the snapshot key (`WITBOX_DATA_DIR/snapshot.key`):
//! the replicas need the same key, and Redis never sees a session in the clear.

use crate::error::{ErrorKind, ToolError};
use redis::aio::ConnectionManager;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a lease lasts unless renewed: the longest a session whose replica
/// died mid-cell waits before another replica takes it over.
pub const LEASE: Duration = Duration::from_secs(3);

/// How often a running call renews its lease.
const RENEW: Duration = Duration::from_secs(1);

/// How often a call waiting for another replica's lease looks again: soon
/// at first (the other call may be ending), then less and less often.
const POLL: [Duration; 2] = [Duration::from_millis(1), Duration::from_millis(20)];

/// Takes the lease if no other replica holds it; answers
/// `{taken, gen or -1 if there is no such session, owner}`. With `ARGV[4]` = 1,
/// the session is new (its first save makes it).
const TAKE: &str = r"
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return {0, redis.call('PTTL', KEYS[1]), ''} end
if ARGV[4] == '1' then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return {1, 0, ''}
end
local found = redis.call('HMGET', KEYS[2], 'gen', 'owner')
if not found[1] then return {1, -1, ''} end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return {1, tonumber(found[1]), found[2] or ''}
";

/// Saves a session if this replica still holds its lease, and lets the lease
/// go; answers the new `gen`, or -1 when the lease is lost.
const SAVE: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
redis.call('DEL', KEYS[1])
local gen = redis.call('HINCRBY', KEYS[2], 'gen', 1)
redis.call('HSET', KEYS[2], 'snap', ARGV[2], 'owner', ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
if ARGV[3] ~= '' then
  redis.call('SADD', KEYS[3], ARGV[5])
  redis.call('PEXPIRE', KEYS[3], ARGV[4])
end
return gen
";

/// Deletes a session and takes it out of its owner's set; answers whether
/// there was one.
const DELETE: &str = r"
local owner = redis.call('HGET', KEYS[1], 'owner')
local deleted = redis.call('DEL', KEYS[1])
if owner and owner ~= '' then redis.call('SREM', ARGV[1] .. owner, ARGV[2]) end
return deleted
";

/// The sessions of an owner's set that still exist; the others leave the set.
const OWNED: &str = r"
local live = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if redis.call('EXISTS', ARGV[1] .. id) == 1 then
    table.insert(live, id)
  else
    redis.call('SREM', KEYS[1], id)
  end
end
return live
";

/// Renews (`ARGV[2]` ms) or, with `ARGV[2]` = 0, lets go of a lease this replica holds.
const HOLD: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '0' then return redis.call('DEL', KEYS[1]) end
return redis.call('PEXPIRE', KEYS[1], ARGV[2])
";

/// The Redis a fleet's replicas share their sessions through.
pub struct Shared {
    conn: ConnectionManager,
    /// This process, in the leases it takes.
    replica: String,
    /// Numbers this process's leases: each call's is its own, so a late
    /// release of one never lets go of the next.
    leases: std::sync::atomic::AtomicU64,
    /// Where, for messages (no password).
    shown: String,
    take: redis::Script,
    save: redis::Script,
    hold: redis::Script,
    delete: redis::Script,
    owned: redis::Script,
}

/// A session as the store has it.
pub(crate) struct Stored {
    pub(crate) snapshot: Vec<u8>,
    pub(crate) version: u64,
    pub(crate) owner: Option<String>,
}

impl Shared {
    /// The store at `url` (`redis://HOST:PORT/DB`, `rediss://` for TLS is not
    /// built in); connects on first use, and again after the connection drops.
    pub fn open(url: &str) -> anyhow::Result<Arc<Self>> {
        use anyhow::Context;
        let client = redis::Client::open(url)
            .with_context(|| format!("`{url}` is not a Redis URL (`redis://HOST:PORT/DB`)"))?;
        let info = client.get_connection_info();
        let shown = format!("redis://{}/{}", info.addr(), info.redis_settings().db());
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(5)))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client, config)
            .with_context(|| format!("failed to set up the connection to {shown}"))?;
        Ok(Arc::new(Self {
            conn,
            replica: format!("r-{}", uuid::Uuid::new_v4().simple()),
            leases: Default::default(),
            shown,
            take: redis::Script::new(TAKE),
            save: redis::Script::new(SAVE),
            hold: redis::Script::new(HOLD),
            delete: redis::Script::new(DELETE),
            owned: redis::Script::new(OWNED),
        }))
    }

    /// Where the store is, for messages.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// Whether the store answers (`/readyz`).
    pub async fn reachable(&self) -> bool {
        let mut conn = self.conn.clone();
        let cmd = redis::cmd("PING");
        let ping = cmd.query_async::<String>(&mut conn);
        matches!(
            tokio::time::timeout(Duration::from_secs(1), ping).await,
            Ok(Ok(_))
        )
    }

    fn failed(&self, what: &str, e: redis::RedisError) -> ToolError {
        ToolError::new(
            ErrorKind::Internal,
            format!("the session store {} failed to {what}: {e}", self.shown),
        )
    }

    /// Takes session `id`'s lease, waiting up to `wait` while another replica
    /// runs a call on it (`new`: a session this replica is making). `Ok(None)`:
    /// the store has no such session.
    pub(crate) async fn lease(
        self: &Arc<Self>,
        id: &str,
        ttl: Duration,
        wait: Duration,
        new: bool,
    ) -> Result<Option<(Lease, u64, Option<String>)>, ToolError> {
        let start = Instant::now();
        let mut conn = self.conn.clone();
        let mut poll = POLL[0];
        let n = self
            .leases
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let token = format!("{}:{n}", self.replica);
        loop {
            let (taken, version, owner): (i64, i64, String) = self
                .take
                .key(lease_key(id))
                .key(session_key(id))
                .arg(&token)
                .arg(millis(LEASE))
                .arg(millis(ttl))
                .arg(u8::from(new))
                .invoke_async(&mut conn)
                .await
                .map_err(|e| self.failed("lease a session", e))?;
            if taken == 1 {
                let Ok(version) = u64::try_from(version) else {
                    return Ok(None);
                };
                let lease = Lease::new(self.clone(), id, token);
                return Ok(Some((lease, version, (!owner.is_empty()).then_some(owner))));
            }
            if start.elapsed() >= wait {
                return Err(ToolError::new(
                    ErrorKind::Denied,
                    format!(
                        "session `{id}` is busy: another replica has been running a call on it for more than {} s; retry later",
                        wait.as_secs()
                    ),
                ));
            }
            tokio::time::sleep(poll).await;
            poll = (poll * 2).min(POLL[1]);
        }
    }

    /// Session `id` as the store has it.
    pub(crate) async fn load(&self, id: &str) -> Result<Option<Stored>, ToolError> {
        let mut conn = self.conn.clone();
        let (snapshot, version, owner): (Option<Vec<u8>>, Option<u64>, Option<String>) =
            redis::cmd("HMGET")
                .arg(session_key(id))
                .arg("snap")
                .arg("gen")
                .arg("owner")
                .query_async(&mut conn)
                .await
                .map_err(|e| self.failed("read a session", e))?;
        Ok(match (snapshot, version) {
            (Some(snapshot), Some(version)) => Some(Stored {
                snapshot,
                version,
                owner: owner.filter(|o| !o.is_empty()),
            }),
            _ => None,
        })
    }

    /// Saves session `id` under `lease`, which ends; returns its new `version`.
    pub(crate) async fn save(
        &self,
        mut lease: Lease,
        snapshot: &[u8],
        owner: Option<&str>,
        ttl: Duration,
    ) -> Result<u64, ToolError> {
        lease.renew.abort();
        let id = std::mem::take(&mut lease.id);
        let id = id.as_str();
        let mut conn = self.conn.clone();
        let version: i64 = self
            .save
            .key(lease_key(id))
            .key(session_key(id))
            .key(owner_key(owner.unwrap_or("")))
            .arg(&lease.token)
            .arg(snapshot)
            .arg(owner.unwrap_or(""))
            .arg(millis(ttl))
            .arg(id)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.failed("save a session", e))?;
        u64::try_from(version).map_err(|_| {
            ToolError::new(
                ErrorKind::Internal,
                format!(
                    "session `{id}` was not saved: this replica lost its lease on it (it was paused for more than {} s), and another may have run it since",
                    LEASE.as_secs()
                ),
            )
        })
    }

    /// Deletes session `id`; whether there was one.
    pub(crate) async fn delete(&self, id: &str) -> bool {
        let mut conn = self.conn.clone();
        let deleted: Result<i64, _> = self
            .delete
            .key(session_key(id))
            .arg(owner_key(""))
            .arg(id)
            .invoke_async(&mut conn)
            .await;
        deleted.is_ok_and(|n| n > 0)
    }

    /// The sessions `owner` made that the store still has.
    pub(crate) async fn owned_by(&self, owner: &str) -> Result<Vec<String>, ToolError> {
        let mut conn = self.conn.clone();
        let mut live: Vec<String> = self
            .owned
            .key(owner_key(owner))
            .arg(session_key(""))
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.failed("list sessions", e))?;
        live.sort();
        Ok(live)
    }

    /// The owner of session `id`, if the store has it.
    pub(crate) async fn owner(&self, id: &str) -> Result<Option<Option<String>>, ToolError> {
        let mut conn = self.conn.clone();
        let owner: Option<String> = redis::cmd("HGET")
            .arg(session_key(id))
            .arg("owner")
            .query_async(&mut conn)
            .await
            .map_err(|e| self.failed("read a session", e))?;
        Ok(owner.map(|o| (!o.is_empty()).then_some(o)))
    }

    async fn hold(&self, id: &str, token: &str, ms: u64) {
        let mut conn = self.conn.clone();
        let _: Result<i64, _> = self
            .hold
            .key(lease_key(id))
            .arg(token)
            .arg(ms)
            .invoke_async(&mut conn)
            .await;
    }
}

/// A session's lease, renewed while held and let go when dropped.
pub(crate) struct Lease {
    shared: Arc<Shared>,
    id: String,
    /// What the store holds for it: this replica, and which of its calls.
    token: String,
    renew: tokio::task::JoinHandle<()>,
}

impl Lease {
    fn new(shared: Arc<Shared>, id: &str, token: String) -> Self {
        let renew = tokio::spawn({
            let (shared, id, token) = (shared.clone(), id.to_string(), token.clone());
            async move {
                loop {
                    tokio::time::sleep(RENEW).await;
                    shared.hold(&id, &token, millis(LEASE)).await;
                }
            }
        });
        Self {
            shared,
            id: id.to_string(),
            token,
            renew,
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.renew.abort();
        let (shared, id) = (self.shared.clone(), std::mem::take(&mut self.id));
        if id.is_empty() {
            return;
        }
        let token = std::mem::take(&mut self.token);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { shared.hold(&id, &token, 0).await });
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

fn session_key(id: &str) -> String {
    format!("witbox:session:{id}")
}

fn lease_key(id: &str) -> String {
    format!("witbox:lease:{id}")
}

fn owner_key(owner: &str) -> String {
    format!("witbox:owner:{owner}")
}
