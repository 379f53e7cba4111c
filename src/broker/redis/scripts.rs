//! The Redis side of the Redis broker: key names, the Lua scripts that make each operation one
//! atomic step, and the parsing of their replies.
//!
//! Keys of channel `C` (the hash tag `{C}` keeps them on one Redis Cluster slot):
//!
//! | key | type | holds |
//! |---|---|---|
//! | `sb:{C}:m` | hash | `e` the epoch, `t` the top offset; expires [`META_TTL_EXTRA`] after the history |
//! | `sb:{C}:h` | stream | the history: entry id `OFFSET-0`, fields `x` (expiry, ms) and `b` (body) |
//! | `sb:{C}:i:KEY` | string | the offset an idempotency key got; expires with the window |
//! | `sb:{C}:ph` | hash | presence: client id → info JSON |
//! | `sb:{C}:pz` | sorted set | presence: client id scored by its expiry (ms) |
//! | `sb:{C}:t` | pub/sub channel | every node subscribed to `C` receives its messages |
//! | `sb:{C}:n` | string | room `C`: the node serving its WebRTC media; expires unless renewed |
//!
//! Every script reads the time with `TIME` inside Redis, so nodes with skewed clocks agree.

use std::sync::Arc;

use bytes::Bytes;
use redis::Value;
use switchboard_protocol::ChannelName;

use crate::broker::BrokerError;
use crate::broker::envelope;
use crate::model::{Epoch, Publication};

/// Seconds a channel's meta (epoch and top) outlives its history when nothing is published,
/// so positions survive quiet hours; after that the channel starts over with a new epoch.
pub(super) const META_TTL_EXTRA: u64 = 7 * 24 * 3600;

const PREFIX: &str = "sb:{";

/// The key names of one channel.
pub(super) struct Keys {
    base: String,
}

impl Keys {
    pub(super) fn new(channel: &ChannelName) -> Self {
        Self { base: format!("{PREFIX}{}}}", channel.as_str()) }
    }
    pub(super) fn meta(&self) -> String {
        format!("{}:m", self.base)
    }
    pub(super) fn history(&self) -> String {
        format!("{}:h", self.base)
    }
    pub(super) fn idempotency(&self, key: &str) -> String {
        format!("{}:i:{key}", self.base)
    }
    pub(super) fn presence(&self) -> String {
        format!("{}:ph", self.base)
    }
    pub(super) fn presence_expiry(&self) -> String {
        format!("{}:pz", self.base)
    }
    pub(super) fn topic(&self) -> String {
        topic(self.base.as_str())
    }
    pub(super) fn room_node(&self) -> String {
        format!("{}:n", self.base)
    }
}

fn topic(base: &str) -> String {
    format!("{base}:t")
}

/// The channel a pub/sub topic belongs to.
pub(super) fn channel_of_topic(topic: &str) -> Option<ChannelName> {
    let name = topic.strip_prefix(PREFIX)?.strip_suffix("}:t")?;
    ChannelName::new(name).ok()
}

/// Drops the history's expired entries from its head (they are always the oldest).
const TRIM: &str = r#"
local function trim(stream, now)
  while true do
    local head = redis.call('XRANGE', stream, '-', '+', 'COUNT', 64)
    if #head == 0 then return end
    local cut = nil
    for _, e in ipairs(head) do
      local f = e[2]
      local expiry = nil
      for i = 1, #f, 2 do if f[i] == 'x' then expiry = tonumber(f[i + 1]) end end
      if expiry ~= nil and expiry <= now then cut = e[1] else break end
    end
    if cut == nil then return end
    local offset = tonumber(string.match(cut, '^(%d+)'))
    redis.call('XTRIM', stream, 'MINID', string.format('%d', offset + 1))
    if #head < 64 then return end
  end
end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
"#;

/// KEYS: meta, history, idempotency key. ARGV: topic, candidate epoch, body, history size,
/// history TTL (s), meta TTL (s), idempotency window (s), has-key flag.
/// Returns `{epoch, offset, duplicate}`.
const PUBLISH: &str = r#"
local meta, stream, idem = KEYS[1], KEYS[2], KEYS[3]
local epoch = redis.call('HGET', meta, 'e')
if epoch and ARGV[8] == '1' then
  local prev = redis.call('GET', idem)
  if prev then return {epoch, tonumber(prev), 1} end
end
if not epoch then
  epoch = ARGV[2]
  redis.call('DEL', stream)
  redis.call('HSET', meta, 'e', epoch, 't', 0)
end
local top = redis.call('HINCRBY', meta, 't', 1)
local size, ttl = tonumber(ARGV[4]), tonumber(ARGV[5])
redis.call('EXPIRE', meta, ttl + tonumber(ARGV[6]))
local now = now_ms()
if size > 0 and ttl > 0 then
  redis.call('XADD', stream, 'MAXLEN', size, string.format('%d-0', top), 'x', string.format('%d', now + ttl * 1000), 'b', ARGV[3])
  redis.call('PEXPIRE', stream, ttl * 1000)
  trim(stream, now)
end
if ARGV[8] == '1' then redis.call('SET', idem, top, 'EX', ARGV[7]) end
redis.call('PUBLISH', ARGV[1], 'P' .. string.format('%d', top) .. ':' .. epoch .. ':' .. ARGV[3])
return {epoch, top, 0}
"#;

/// KEYS: meta, history. ARGV: candidate epoch, meta TTL (s), since epoch, since offset, limit,
/// reverse flag. Returns `{epoch, top, {offset, body, ...}}`.
const HISTORY: &str = r#"
local meta, stream = KEYS[1], KEYS[2]
local epoch = redis.call('HGET', meta, 'e')
if not epoch then
  epoch = ARGV[1]
  redis.call('DEL', stream)
  redis.call('HSET', meta, 'e', epoch, 't', 0)
  redis.call('EXPIRE', meta, tonumber(ARGV[2]))
  return {epoch, 0, {}}
end
local top = tonumber(redis.call('HGET', meta, 't'))
local limit = tonumber(ARGV[5])
if limit == 0 then return {epoch, top, {}} end
trim(stream, now_ms())
local from = 1
if ARGV[3] == epoch then from = tonumber(ARGV[4]) + 1 end
local entries
if ARGV[6] == '1' then
  entries = redis.call('XREVRANGE', stream, '+', string.format('%d', from), 'COUNT', limit)
else
  entries = redis.call('XRANGE', stream, string.format('%d', from), '+', 'COUNT', limit)
end
local out = {}
for _, e in ipairs(entries) do
  local f = e[2]
  for i = 1, #f, 2 do
    if f[i] == 'b' then
      out[#out + 1] = tonumber(string.match(e[1], '^(%d+)'))
      out[#out + 1] = f[i + 1]
    end
  end
end
return {epoch, top, out}
"#;

/// Drops expired presence entries. Defines `prune(hash, zset, now)`.
const PRUNE: &str = r#"
local function prune(hash, zset, now)
  local gone = redis.call('ZRANGEBYSCORE', zset, '-inf', string.format('%d', now))
  if #gone > 0 then
    redis.call('HDEL', hash, unpack(gone))
    redis.call('ZREMRANGEBYSCORE', zset, '-inf', string.format('%d', now))
  end
end
"#;

/// KEYS: presence hash, expiry zset. ARGV: client, info, TTL (s), announce flag, topic, message.
/// Returns 1 when the client was not present.
const PRESENCE_ADD: &str = r#"
local hash, zset = KEYS[1], KEYS[2]
local now = now_ms()
prune(hash, zset, now)
local ttl = tonumber(ARGV[3]) * 1000
local added = redis.call('HSET', hash, ARGV[1], ARGV[2])
redis.call('ZADD', zset, string.format('%d', now + ttl), ARGV[1])
redis.call('PEXPIRE', hash, ttl)
redis.call('PEXPIRE', zset, ttl)
if added == 1 and ARGV[4] == '1' then redis.call('PUBLISH', ARGV[5], ARGV[6]) end
return added
"#;

/// KEYS: presence hash, expiry zset. ARGV: client, announce flag, topic, message.
const PRESENCE_REMOVE: &str = r#"
local hash, zset = KEYS[1], KEYS[2]
local removed = redis.call('HDEL', hash, ARGV[1])
redis.call('ZREM', zset, ARGV[1])
if removed == 1 and ARGV[2] == '1' then redis.call('PUBLISH', ARGV[3], ARGV[4]) end
return removed
"#;

/// KEYS: presence hash, expiry zset. Returns the infos.
const PRESENCE: &str = r#"
local hash, zset = KEYS[1], KEYS[2]
prune(hash, zset, now_ms())
return redis.call('HVALS', hash)
"#;

/// The node serving a room's media. KEYS: the room's node key. ARGV: this node, ttl (ms).
/// Takes the room when nobody holds it, renews it when this node does; answers the holder.
const CLAIM_ROOM: &str = r#"
local holder = redis.call('GET', KEYS[1])
if not holder or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return ARGV[1]
end
return holder
"#;

/// The scripts, loaded once per process (redis-rs sends EVALSHA and loads on NOSCRIPT, so a
/// restarted Redis is served too).
pub(super) struct Scripts {
    pub(super) publish: redis::Script,
    pub(super) history: redis::Script,
    pub(super) presence_add: redis::Script,
    pub(super) presence_remove: redis::Script,
    pub(super) presence: redis::Script,
    pub(super) claim_room: redis::Script,
}

impl Scripts {
    pub(super) fn new() -> Self {
        let with = |prelude: &[&str], body: &str| redis::Script::new(&format!("{}{body}", prelude.concat()));
        Self {
            publish: with(&[TRIM], PUBLISH),
            history: with(&[TRIM], HISTORY),
            presence_add: with(&[TRIM, PRUNE], PRESENCE_ADD),
            presence_remove: redis::Script::new(PRESENCE_REMOVE),
            presence: with(&[TRIM, PRUNE], PRESENCE),
            claim_room: redis::Script::new(CLAIM_ROOM),
        }
    }
}

fn bad(what: &str) -> BrokerError {
    BrokerError::Backend(format!("unexpected reply from redis: {what}"))
}

fn text(v: &Value) -> Option<&str> {
    match v {
        Value::BulkString(b) => std::str::from_utf8(b).ok(),
        Value::SimpleString(s) => Some(s),
        _ => None,
    }
}

fn int(v: &Value) -> Option<u64> {
    match v {
        Value::Int(n) => u64::try_from(*n).ok(),
        other => text(other)?.parse().ok(),
    }
}

/// `{epoch, offset, duplicate}`.
pub(super) fn parse_publish(v: &Value) -> Result<(Epoch, u64, bool), BrokerError> {
    let Value::Array(items) = v else { return Err(bad("publish")) };
    match items.as_slice() {
        [epoch, offset, duplicate] => Ok((
            Arc::from(text(epoch).ok_or_else(|| bad("epoch"))?),
            int(offset).ok_or_else(|| bad("offset"))?,
            int(duplicate) == Some(1),
        )),
        _ => Err(bad("publish")),
    }
}

/// `{epoch, top, {offset, body, ...}}` as publications of `channel`.
pub(super) fn parse_history(
    channel: &ChannelName,
    v: Value,
) -> Result<(Epoch, u64, Vec<Arc<Publication>>), BrokerError> {
    let Value::Array(items) = v else { return Err(bad("history")) };
    let [epoch, top, entries]: [Value; 3] = items.try_into().map_err(|_| bad("history"))?;
    let epoch: Epoch = Arc::from(text(&epoch).ok_or_else(|| bad("epoch"))?);
    let top = int(&top).ok_or_else(|| bad("top"))?;
    let entries = match entries {
        Value::Array(e) => e,
        Value::Nil => Vec::new(),
        _ => return Err(bad("history entries")),
    };
    let mut publications = Vec::with_capacity(entries.len() / 2);
    let mut it = entries.into_iter();
    while let (Some(offset), Some(body)) = (it.next(), it.next()) {
        let offset = int(&offset).ok_or_else(|| bad("entry offset"))?;
        let Value::BulkString(body) = body else { return Err(bad("entry body")) };
        let (payload, info) =
            envelope::decode_body(Bytes::from(body)).map_err(|e| BrokerError::Backend(e.to_string()))?;
        publications.push(Arc::new(Publication::new(channel.clone(), offset, epoch.clone(), payload, info)));
    }
    Ok((epoch, top, publications))
}

/// A 0/1 integer reply.
pub(super) fn parse_flag(v: &Value) -> bool {
    int(v) == Some(1)
}

/// The presence infos.
pub(super) fn parse_infos(
    v: Value,
) -> Result<Vec<Arc<switchboard_protocol::frame::ClientInfo>>, BrokerError> {
    let items = match v {
        Value::Array(items) | Value::Set(items) => items,
        Value::Nil => Vec::new(),
        _ => return Err(bad("presence")),
    };
    items
        .iter()
        .map(|i| match i {
            Value::BulkString(b) => envelope::decode_info(b).map_err(|e| BrokerError::Backend(e.to_string())),
            _ => Err(bad("presence entry")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_share_a_hash_tag_and_topics_map_back() {
        let ch = ChannelName::new("chat:room.1").unwrap();
        let k = Keys::new(&ch);
        for key in [k.meta(), k.history(), k.idempotency("x"), k.presence(), k.presence_expiry()] {
            assert!(key.starts_with("sb:{chat:room.1}:"), "{key}");
        }
        assert_eq!(channel_of_topic(&k.topic()), Some(ch));
        assert_eq!(channel_of_topic("other"), None);
    }

    #[test]
    fn parses_replies_and_rejects_odd_ones() {
        let ok = Value::Array(vec![Value::BulkString(b"ep".to_vec()), Value::Int(3), Value::Int(0)]);
        assert_eq!(parse_publish(&ok).unwrap(), (Arc::from("ep"), 3, false));
        assert!(parse_publish(&Value::Int(1)).is_err());
        let ch = ChannelName::new("a").unwrap();
        let h = Value::Array(vec![
            Value::BulkString(b"ep".to_vec()),
            Value::Int(9),
            Value::Array(vec![Value::Int(8), Value::BulkString(b"j0:{}".to_vec())]),
        ]);
        let (epoch, top, pubs) = parse_history(&ch, h).unwrap();
        assert_eq!((&*epoch, top, pubs.len(), pubs[0].offset), ("ep", 9, 1, 8));
        let broken = Value::Array(vec![
            Value::BulkString(b"ep".to_vec()),
            Value::Int(9),
            Value::Array(vec![Value::Int(8), Value::BulkString(b"?".to_vec())]),
        ]);
        assert!(parse_history(&ch, broken).is_err());
        assert!(parse_infos(Value::Array(vec![Value::BulkString(b"nope".to_vec())])).is_err());
    }
}
