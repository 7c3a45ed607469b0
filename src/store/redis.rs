//! Redis: sessions and failed-login counters shared by several instances,
//! with server-side expiry (TTL) for both timeouts. Users stay in the database.
//!
//! Every key carries one hash tag (`{prefix}`), so the Lua scripts that keep
//! a session and its user's index consistent are atomic on a single node,
//! behind Sentinel, and in a Cluster (where latchkey's keys then live on one
//! shard: the cluster gives failover, not sharding of these few keys).
//! Scripts that delete sessions publish what they deleted on
//! `{prefix}:changes`, which every instance's cache listens to.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use fred::prelude::*;

use super::feed::{Change, ChangeFeed, FeedSink, Sending};
use super::{
    Attempt, FailurePolicy, FailureStore, Millis, SessionKey, SessionRecord, SessionStore,
    StoreError, StoreResult, UserId,
};

/// Sessions and failure counters in Redis.
#[derive(Clone)]
pub struct RedisStore {
    client: Client,
    /// Replicas that must have a session's creation or deletion before it
    /// is acknowledged (see [`RedisStore::durable`]).
    wait_replicas: i64,
    prefix: String,
    idle: Millis,
    absolute: Millis,
    url: String,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

fn unavailable(e: Error) -> StoreError {
    StoreError::unavailable(e)
}

fn client_for(url: &str) -> Result<Client, Error> {
    let config = Config::from_url(url)?;
    Builder::from_config(config)
        .with_connection_config(|c| {
            c.connection_timeout = Duration::from_secs(2);
            c.internal_command_timeout = Duration::from_secs(2);
            c.max_command_attempts = 2;
        })
        // A stopped server must fail requests quickly (503), not queue them.
        .with_performance_config(|c| c.default_command_timeout = Duration::from_secs(2))
        .set_policy(ReconnectPolicy::new_exponential(0, 100, 2_000, 2))
        .build()
}

/// A Redis error in words for a person. fred keeps an I/O error only as its
/// `Debug` text (`Os { code: 111, kind: ConnectionRefused, message:
/// "Connection refused" }`); the message inside is what to show.
pub(crate) fn describe(e: &Error) -> String {
    let details = e.details();
    if *e.kind() != ErrorKind::IO {
        return e.to_string();
    }
    if let Some(start) = details.find("message: \"") {
        let rest = &details[start + "message: \"".len()..];
        if let Some(end) = rest.find('"') {
            return rest[..end].to_lowercase();
        }
    }
    match details
        .strip_prefix("Kind(")
        .and_then(|k| k.strip_suffix(')'))
    {
        Some(kind) => format!("cannot connect ({kind})"),
        None => "cannot connect".to_owned(),
    }
}

impl RedisStore {
    /// Connects to `url` (`redis://`, `rediss://`, `redis-cluster://`,
    /// `redis-sentinel://`). `prefix` namespaces every key; `idle` and
    /// `absolute` set the sessions' expiry.
    ///
    /// # Errors
    /// When the URL is invalid or the server cannot be reached.
    pub async fn open(
        url: &str,
        prefix: &str,
        idle: Duration,
        absolute: Duration,
    ) -> Result<Self, Error> {
        let client = client_for(url)?;
        client.init().await?;
        let millis = crate::clock::millis;
        Ok(Self {
            client,
            // With Sentinel, a failover promotes a replica; what the old
            // primary acknowledged but had not yet replicated is lost, and
            // a lost sign-out would bring a session back.
            wait_replicas: i64::from(url.starts_with("redis-sentinel")),
            prefix: format!("{{{prefix}}}"),
            idle: millis(idle),
            absolute: millis(absolute),
            url: url.to_owned(),
        })
    }

    fn session_key(&self, key: &SessionKey) -> String {
        format!("{}:s:{}", self.prefix, key.to_hex())
    }

    fn user_key(&self, user: UserId) -> String {
        format!("{}:u:{}", self.prefix, user.0)
    }

    fn users_key(&self) -> String {
        format!("{}:users", self.prefix)
    }

    fn failure_key(&self, key: &str) -> String {
        format!("{}:f:{key}", self.prefix)
    }

    fn channel(&self) -> String {
        format!("{}:changes", self.prefix)
    }

    /// Waits until `wait_replicas` replicas have this connection's writes
    /// (Redis `WAIT`), for at most a second. When fewer answer (a replica is
    /// down), the write stands and the log says it could be lost in a
    /// failover: refusing every sign-out while a replica is down would be
    /// worse.
    async fn durable(&self) -> StoreResult<()> {
        if self.wait_replicas == 0 {
            return Ok(());
        }
        let acknowledged: i64 = self
            .client
            .custom(
                fred::cmd!("WAIT"),
                vec![self.wait_replicas.to_string(), "1000".to_owned()],
            )
            .await
            .map_err(unavailable)?;
        if acknowledged < self.wait_replicas {
            tracing::warn!(
                acknowledged,
                wanted = self.wait_replicas,
                "a session change reached fewer Redis replicas than wanted; a failover now could undo it"
            );
        }
        Ok(())
    }

    fn expiry(&self, s: &SessionRecord) -> i64 {
        (s.last_seen + self.idle).min(s.created_at + self.absolute)
    }

    /// Listens for the deletions the scripts publish, and for keys deleted,
    /// expired or evicted behind latchkey's back.
    #[must_use]
    pub fn change_feed(&self) -> Arc<dyn ChangeFeed> {
        Arc::new(PubSubFeed {
            url: self.url.clone(),
            channel: self.channel(),
            publisher: self.client.clone(),
            marker: format!("{}:alive", self.prefix),
            session_keys: format!("{}:s:", self.prefix),
        })
    }

    fn record_args(&self, s: &SessionRecord) -> Vec<Value> {
        vec![
            s.key.to_hex().into(),
            s.user_id.0.into(),
            s.credential_epoch.into(),
            s.roles_epoch.into(),
            s.created_at.into(),
            s.last_seen.into(),
            self.expiry(s).into(),
        ]
    }
}

/// KEYS: session, user index, users set. ARGV: hex, uid, c, r, t, l, expire-at.
const CREATE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'u', ARGV[2], 'c', ARGV[3], 'r', ARGV[4], 't', ARGV[5], 'l', ARGV[6])
redis.call('PEXPIREAT', KEYS[1], ARGV[7])
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('SADD', KEYS[3], ARGV[2])
return 1";

/// KEYS: session. ARGV: last seen, idle, absolute. Never creates.
const TOUCH: &str = r"
local l = redis.call('HGET', KEYS[1], 'l')
if not l then return 0 end
local last = math.max(tonumber(l), tonumber(ARGV[1]))
redis.call('HSET', KEYS[1], 'l', last)
local t = tonumber(redis.call('HGET', KEYS[1], 't'))
redis.call('PEXPIREAT', KEYS[1], math.min(last + tonumber(ARGV[2]), t + tonumber(ARGV[3])))
return 1";

/// KEYS: old session, new session, user index, users set, channel (not a key
/// but kept with them). ARGV: old hex, then the new record as in CREATE.
const ROTATE: &str = r"
if redis.call('EXISTS', KEYS[2]) == 1 then return -1 end
if redis.call('DEL', KEYS[1]) == 0 then return 0 end
redis.call('SREM', KEYS[3], ARGV[1])
redis.call('HSET', KEYS[2], 'u', ARGV[3], 'c', ARGV[4], 'r', ARGV[5], 't', ARGV[6], 'l', ARGV[7])
redis.call('PEXPIREAT', KEYS[2], ARGV[8])
redis.call('SADD', KEYS[3], ARGV[2])
redis.call('SADD', KEYS[4], ARGV[3])
redis.call('PUBLISH', ARGV[9], 's' .. ARGV[1])
return 1";

/// KEYS: session. ARGV: hex, prefix, channel.
const DELETE: &str = r"
local u = redis.call('HGET', KEYS[1], 'u')
if not u then return 0 end
redis.call('DEL', KEYS[1])
redis.call('SREM', ARGV[2] .. ':u:' .. u, ARGV[1])
redis.call('PUBLISH', ARGV[3], 's' .. ARGV[1])
return 1";

/// KEYS: user index. ARGV: prefix, channel, user id.
const DELETE_USER: &str = r"
local n = 0
for _, hex in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  n = n + redis.call('DEL', ARGV[1] .. ':s:' .. hex)
end
redis.call('DEL', KEYS[1])
redis.call('SREM', ARGV[1] .. ':users', ARGV[3])
redis.call('PUBLISH', ARGV[2], 'u' .. ARGV[3])
return n";

/// KEYS: users set. ARGV: prefix, user id. Returns flat [hex, u, c, r, t,
/// l, ...] for the user's live sessions; drops index entries whose session
/// has expired, and the user from the set when none is left.
const LIST: &str = r"
local out = {}
for _, uid in ipairs({ARGV[2]}) do
  local index = ARGV[1] .. ':u:' .. uid
  for _, hex in ipairs(redis.call('SMEMBERS', index)) do
    local v = redis.call('HMGET', ARGV[1] .. ':s:' .. hex, 'u', 'c', 'r', 't', 'l')
    if v[1] then
      table.insert(out, hex)
      for i = 1, 5 do table.insert(out, v[i]) end
    else
      redis.call('SREM', index, hex)
    end
  end
  if redis.call('SCARD', index) == 0 then redis.call('SREM', KEYS[1], uid) end
end
return out";

/// KEYS: counter. ARGV: now, max, window. Returns 1 for a counted attempt,
/// 0 when the limit is reached by attempts in flight, or the lock's end
/// (not counted either way).
const BEGIN_ATTEMPT: &str = r"
local now, max, window = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local v = redis.call('HMGET', KEYS[1], 'n', 'w', 'l')
local n, w, l = tonumber(v[1]), tonumber(v[2]), tonumber(v[3])
if l and l > now then return l end
if n and not l and now - w < window then
  if n >= max then return 0 end
  n = n + 1
else
  n, w = 1, now
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'n', n, 'w', w)
redis.call('PEXPIREAT', KEYS[1], w + window)
return 1";

/// KEYS: counter. ARGV: now, max, lockout, window. Returns the lock's end, or -1.
const FAIL: &str = r"
local now, max, lockout, window = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local v = redis.call('HMGET', KEYS[1], 'n', 'w', 'l')
local n, w, l = tonumber(v[1]), tonumber(v[2]), tonumber(v[3])
if not n then return -1 end
if l and l > now then return l end
if n < max then return -1 end
l = now + lockout
redis.call('HSET', KEYS[1], 'l', l)
redis.call('PEXPIREAT', KEYS[1], math.max(l, w + window))
return l";

/// KEYS: counter. ARGV: max.
const FORGIVE: &str = r"
local n = tonumber(redis.call('HGET', KEYS[1], 'n'))
if not n then return 0 end
n = math.max(n - 1, 0)
if n < tonumber(ARGV[1]) then redis.call('HDEL', KEYS[1], 'l') end
-- Nothing counted and no lock: nothing to keep.
if n == 0 then redis.call('DEL', KEYS[1]) return 1 end
redis.call('HSET', KEYS[1], 'n', n)
return 1";

impl RedisStore {
    async fn eval<R: FromValue>(
        &self,
        script: &'static str,
        keys: Vec<String>,
        args: Vec<Value>,
    ) -> StoreResult<R> {
        self.client
            .eval::<R, _, _, _>(script, keys, args)
            .await
            .map_err(unavailable)
    }
}

/// `text` as a SCAN pattern that matches only itself.
fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn parse_i64(v: Option<&Value>) -> StoreResult<i64> {
    v.and_then(Value::as_i64)
        .ok_or_else(|| StoreError::Corrupt("session field".into()))
}

#[async_trait]
impl SessionStore for RedisStore {
    async fn create(&self, s: &SessionRecord) -> StoreResult<()> {
        let keys = vec![
            self.session_key(&s.key),
            self.user_key(s.user_id),
            self.users_key(),
        ];
        let created: i64 = self.eval(CREATE, keys, self.record_args(s)).await?;
        if created == 0 {
            return Err(StoreError::Conflict);
        }
        self.durable().await
    }

    async fn load(&self, key: &SessionKey) -> StoreResult<Option<SessionRecord>> {
        let values: Vec<Option<i64>> = self
            .client
            .hmget(self.session_key(key), vec!["u", "c", "r", "t", "l"])
            .await
            .map_err(unavailable)?;
        let [Some(u), Some(c), Some(r), Some(t), Some(l)] = values[..] else {
            return Ok(None);
        };
        Ok(Some(SessionRecord {
            key: *key,
            user_id: UserId(u),
            credential_epoch: c,
            roles_epoch: r,
            created_at: t,
            last_seen: l,
        }))
    }

    async fn touch(&self, key: &SessionKey, last_seen: Millis) -> StoreResult<bool> {
        let args = vec![last_seen.into(), self.idle.into(), self.absolute.into()];
        let done: i64 = self.eval(TOUCH, vec![self.session_key(key)], args).await?;
        Ok(done == 1)
    }

    async fn rotate(&self, old: &SessionKey, new: &SessionRecord) -> StoreResult<bool> {
        let keys = vec![
            self.session_key(old),
            self.session_key(&new.key),
            self.user_key(new.user_id),
            self.users_key(),
        ];
        let mut args: Vec<Value> = vec![old.to_hex().into()];
        args.extend(self.record_args(new));
        args.push(self.channel().into());
        let done: i64 = self.eval(ROTATE, keys, args).await?;
        self.durable().await?;
        match done {
            -1 => Err(StoreError::Conflict),
            n => Ok(n == 1),
        }
    }

    async fn delete(&self, key: &SessionKey) -> StoreResult<bool> {
        let args = vec![
            key.to_hex().into(),
            self.prefix.clone().into(),
            self.channel().into(),
        ];
        let done: i64 = self.eval(DELETE, vec![self.session_key(key)], args).await?;
        self.durable().await?;
        Ok(done == 1)
    }

    async fn delete_user_sessions(&self, user: UserId) -> StoreResult<u64> {
        let args = vec![
            self.prefix.clone().into(),
            self.channel().into(),
            user.0.into(),
        ];
        let n: i64 = self
            .eval(DELETE_USER, vec![self.user_key(user)], args)
            .await?;
        self.durable().await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn list(&self, user: Option<UserId>) -> StoreResult<Vec<SessionRecord>> {
        let users: Vec<String> = match user {
            Some(u) => vec![u.0.to_string()],
            None => self
                .client
                .smembers(self.users_key())
                .await
                .map_err(unavailable)?,
        };
        // One short script per user, never one over every session: Redis
        // runs scripts alone, and a long one would stall every instance.
        let mut out = Vec::new();
        for uid in users {
            let args = vec![self.prefix.clone().into(), uid.into()];
            let flat: Vec<Value> = self.eval(LIST, vec![self.users_key()], args).await?;
            for row in flat.chunks(6) {
                let hex = row.first().and_then(Value::as_string).unwrap_or_default();
                let mut key = [0u8; 32];
                hex::decode_to_slice(&hex, &mut key)
                    .map_err(|_| StoreError::Corrupt("session key".into()))?;
                out.push(SessionRecord {
                    key: SessionKey(key),
                    user_id: UserId(parse_i64(row.get(1))?),
                    credential_epoch: parse_i64(row.get(2))?,
                    roles_epoch: parse_i64(row.get(3))?,
                    created_at: parse_i64(row.get(4))?,
                    last_seen: parse_i64(row.get(5))?,
                });
            }
        }
        out.sort_by_key(|s| (s.created_at, s.key.0));
        Ok(out)
    }

    async fn delete_expired(
        &self,
        _idle_before: Millis,
        _created_before: Millis,
    ) -> StoreResult<u64> {
        // Redis expires the sessions itself; listing prunes the indexes.
        self.list(None).await.map(|_| 0)
    }

    async fn ping(&self) -> StoreResult<()> {
        self.client.ping::<()>(None).await.map_err(unavailable)
    }
}

#[async_trait]
impl FailureStore for RedisStore {
    async fn locked_until(&self, key: &str, now: Millis) -> StoreResult<Option<Millis>> {
        let until: Option<i64> = self
            .client
            .hget(self.failure_key(key), "l")
            .await
            .map_err(unavailable)?;
        Ok(until.filter(|&u| u > now))
    }

    async fn begin_attempt(
        &self,
        key: &str,
        now: Millis,
        policy: FailurePolicy,
    ) -> StoreResult<Attempt> {
        let args = vec![
            now.into(),
            i64::from(policy.max_failures).into(),
            policy.window.into(),
        ];
        let decision: i64 = self
            .eval(BEGIN_ATTEMPT, vec![self.failure_key(key)], args)
            .await?;
        Ok(match decision {
            1 => Attempt::Allowed,
            0 => Attempt::Busy,
            until => Attempt::Locked(until),
        })
    }

    async fn fail(
        &self,
        key: &str,
        now: Millis,
        policy: FailurePolicy,
    ) -> StoreResult<Option<Millis>> {
        let args = vec![
            now.into(),
            i64::from(policy.max_failures).into(),
            policy.lockout.into(),
            policy.window.into(),
        ];
        let until: i64 = self.eval(FAIL, vec![self.failure_key(key)], args).await?;
        Ok((until >= 0).then_some(until))
    }

    async fn forgive(&self, key: &str, policy: FailurePolicy) -> StoreResult<()> {
        let args = vec![i64::from(policy.max_failures).into()];
        let _: i64 = self
            .eval(FORGIVE, vec![self.failure_key(key)], args)
            .await?;
        Ok(())
    }

    async fn clear(&self, key: &str) -> StoreResult<()> {
        self.client
            .del::<(), _>(self.failure_key(key))
            .await
            .map_err(unavailable)
    }

    async fn clear_prefix(&self, prefix: &str) -> StoreResult<u64> {
        // SCAN from the client, a batch at a time, rather than one script
        // over the whole keyspace, which would stall every instance.
        let pattern = format!("{}*", glob_escape(&self.failure_key(prefix)));
        let mut cursor = "0".to_owned();
        let mut deleted = 0;
        loop {
            let (next, keys): (String, Vec<String>) = self
                .client
                .custom(
                    fred::cmd!("SCAN"),
                    vec![
                        cursor,
                        "MATCH".into(),
                        pattern.clone(),
                        "COUNT".into(),
                        "1000".into(),
                    ],
                )
                .await
                .map_err(unavailable)?;
            if !keys.is_empty() {
                let n: u64 = self.client.del(keys).await.map_err(unavailable)?;
                deleted += n;
            }
            if next == "0" {
                return Ok(deleted);
            }
            cursor = next;
        }
    }

    async fn delete_stale(&self, _now: Millis, _window: Millis) -> StoreResult<u64> {
        // Counters carry their own expiry.
        Ok(0)
    }
}

/// Subscribes to the scripts' deletion messages on a connection of its own.
struct PubSubFeed {
    url: String,
    channel: String,
    /// The store's client, for heartbeats: they travel like the scripts'
    /// messages, from the store's connection through Redis to the
    /// subscription.
    publisher: Client,
    /// A key every heartbeat makes sure exists: when it has to create it,
    /// the keys were flushed or deleted by hand (FLUSHDB reports nothing).
    marker: String,
    /// What session keys start with, to read keyspace events.
    session_keys: String,
}

/// KEYS: the marker. ARGV: channel, heartbeat. A missing marker means the
/// keys went away behind latchkey's back: every instance hears "anything
/// may have changed" before the heartbeat.
const BEAT: &str = r"
if redis.call('SET', KEYS[1], '1', 'NX') then redis.call('PUBLISH', ARGV[1], '*') end
redis.call('PUBLISH', ARGV[1], ARGV[2])
return 0";

/// Keyspace events reported for keys that went away: deleted (DEL, UNLINK),
/// expired, evicted under `maxmemory`.
const KEY_EVENTS: [&str; 3] = ["del", "expired", "evicted"];

impl ChangeFeed for PubSubFeed {
    fn source(&self) -> &'static str {
        "Redis"
    }

    fn send(self: Arc<Self>, message: String) -> Sending {
        Box::pin(async move {
            let sent: Result<i64, Error> = self
                .publisher
                .eval(
                    BEAT,
                    vec![self.marker.clone()],
                    vec![self.channel.clone(), message],
                )
                .await;
            if let Err(e) = sent {
                tracing::debug!(error = %e, "change feed heartbeat not sent");
            }
        })
    }

    fn start(self: Arc<Self>, sink: FeedSink) {
        super::feed::spawn(async move {
            loop {
                if let Err(e) = self.run(&sink).await {
                    tracing::debug!(error = %e, "Redis change feed down");
                }
                sink.set_healthy(false);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
    }
}

impl PubSubFeed {
    /// The channels to follow: latchkey's own, and the keyspace events of
    /// keys that went away, which this turns on in the server (adding to
    /// what is on already) when it may; a server that refuses `CONFIG`
    /// (a managed Redis) must have `notify-keyspace-events` include `Egxe`,
    /// or keys deleted by hand are noticed only when a session is next
    /// read from Redis.
    async fn channels(&self, client: &Client) -> Vec<String> {
        let mut channels = vec![self.channel.clone()];
        if self.url.starts_with("redis-cluster") {
            // Keyspace events are per node; not followed in a Cluster.
            return channels;
        }
        let current: Result<Vec<String>, Error> = client
            .custom(
                fred::cmd!("CONFIG"),
                vec!["GET".to_owned(), "notify-keyspace-events".to_owned()],
            )
            .await;
        let flags = current
            .ok()
            .and_then(|pair| pair.get(1).cloned())
            .unwrap_or_default();
        let mut wanted = flags.clone();
        for flag in ['E', 'g', 'x', 'e'] {
            let implied = flag != 'E' && wanted.contains('A');
            if !wanted.contains(flag) && !implied {
                wanted.push(flag);
            }
        }
        if wanted != flags {
            let set: Result<String, Error> = client
                .custom(
                    fred::cmd!("CONFIG"),
                    vec![
                        "SET".to_owned(),
                        "notify-keyspace-events".to_owned(),
                        wanted.clone(),
                    ],
                )
                .await;
            if let Err(e) = set {
                tracing::warn!(error = %describe(&e), "cannot turn on Redis keyspace events \
                    (notify-keyspace-events Egxe): sessions deleted by hand are noticed only \
                    at their next read from Redis");
                return channels;
            }
        }
        let db = Config::from_url(&self.url)
            .ok()
            .and_then(|c| c.database)
            .unwrap_or(0);
        channels.extend(KEY_EVENTS.map(|event| format!("__keyevent@{db}__:{event}")));
        channels
    }

    /// A key that went away: a session's is that session ended; the
    /// marker's is everything gone.
    fn key_event(&self, key: &str, sink: &FeedSink) {
        if let Some(hex_key) = key.strip_prefix(&self.session_keys) {
            sink.changed(Change::parse(&format!("s{hex_key}")));
        } else if key == self.marker {
            sink.changed(Change::Everything);
        }
    }

    /// One subscription's life: healthy from a confirmed SUBSCRIBE until
    /// the connection reports an error.
    async fn run(&self, sink: &FeedSink) -> Result<(), Error> {
        let client = client_for(&self.url)?;
        // Reconnection is done here, so that every new connection is
        // followed by a new SUBSCRIBE before the cache is trusted again.
        let mut errors = client.error_rx();
        let mut messages = client.message_rx();
        let mut key_events = client.keyspace_event_rx();
        let mut reconnects = client.reconnect_rx();
        client.init().await?;
        let mut channels = self.channels(&client).await;
        client.subscribe(channels.clone()).await?;
        sink.set_healthy(true);
        let result = loop {
            tokio::select! {
                msg = messages.recv() => match msg {
                    Ok(m) => sink.received(&m.value.as_string().unwrap_or_default()),
                    Err(_) => break Ok(()),
                },
                // fred hands keyspace events to their own receiver.
                event = key_events.recv() => match event {
                    Ok(e) => self.key_event(&String::from_utf8_lossy(e.key.as_bytes()), sink),
                    Err(_) => break Ok(()),
                },
                err = errors.recv() => {
                    let _ = err;
                    sink.set_healthy(false);
                }
                rec = reconnects.recv() => {
                    if rec.is_err() { break Ok(()); }
                    // A restarted server, or a new primary after a failover,
                    // may not have keyspace events on.
                    channels = self.channels(&client).await;
                    client.subscribe(channels.clone()).await?;
                    sink.set_healthy(true);
                }
            }
        };
        let _ = client.quit().await;
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_read_as_words_not_debug_dumps() {
        let refused = Error::from(std::io::Error::from_raw_os_error(111));
        assert_eq!(describe(&refused), "connection refused");
        let timed_out = Error::from(std::io::Error::from(std::io::ErrorKind::TimedOut));
        assert_eq!(describe(&timed_out), "cannot connect (TimedOut)");
        let other = Error::new(ErrorKind::Url, "bad url");
        assert_eq!(describe(&other), "Url Error: bad url");
    }
}
