-- sessiond: helpers put in front of every session script (see scripts.rs).
--
-- A session is a hash: t tenant, u user, c customer, m auth method, ca created_at,
-- au auth_time (absent, in a record written before it was: ca), ls last_seen_at, ax absolute
-- expiry, it idle ttl (absent: none), ua / ip / lb device (absent: none), st state
-- (a active, r revoked, e expired), sr revoke reason, sa state time.
-- A refresh token is a hash: t tenant, s session id, x expiry, and once rotated: ra rotated
-- at, rs successor (hex), rz sealed successor.
-- Times are unix seconds given by the caller (`now`), never the server clock, except the
-- change log's `at`.

-- Ended sessions stay listable this long after their absolute expiry.
local KEEP = 86400

-- A session index (a user's, a tenant's) is scored created_at * TICKS + n, n the session's
-- rank among the index's sessions of that second (0, 1, ...): it lists in creation order,
-- and floor(score / TICKS) is created_at. Exact as a double while created_at < 2^33.
local TICKS = 1048576

-- The score of a session created at `ca` (unix seconds) added to `index` now: after every
-- member of that second.
local function index_score(index, ca)
  local lo = ca * TICKS
  local hi = lo + TICKS - 1
  local last = redis.call('ZREVRANGEBYSCORE', index, string.format('%.0f', hi),
    string.format('%.0f', lo), 'WITHSCORES', 'LIMIT', 0, 1)
  local score = lo
  if last[2] then
    score = math.min(tonumber(last[2]) + 1, hi)
  end
  return string.format('%.0f', score)
end

-- The created_at of an index score. Members indexed by an older sessiond are scored
-- created_at itself (below 2^33; a ranked score of any time since 1970-01-01T02:16 is not).
local function score_time(score)
  if score >= 2 ^ 33 then
    return math.floor(score / TICKS)
  end
  return score
end

local function active_at(key, now)
  local f = redis.call('HMGET', key, 'st', 'ls', 'ax', 'it')
  if f[1] ~= 'a' then
    return false
  end
  local expires = tonumber(f[3])
  if f[4] then
    local idle = tonumber(f[2]) + tonumber(f[4])
    if idle < expires then
      expires = idle
    end
  end
  return now < expires
end

-- The instant the session at `key` times out (`Session::expires_at`), and whether its idle
-- timeout comes first (before the absolute expiry).
local function timeout_of(key)
  local f = redis.call('HMGET', key, 'ls', 'ax', 'it')
  local expires = tonumber(f[2])
  if f[3] then
    local idle = tonumber(f[1]) + tonumber(f[3])
    if idle < expires then
      return idle, true
    end
  end
  return expires, false
end

-- Scores the session at `key` in the route's timeouts (a zset of the active sessions, score
-- their timeout; see keys.rs) after its last_seen_at moved or it was created. Sessions
-- created by a sessiond from before the timeouts zset have no member until then.
local function schedule(timeouts, key, sid)
  redis.call('ZADD', timeouts, string.format('%.0f', (timeout_of(key))), sid)
end

-- Seconds from `now` the keys of the session at `key` are kept: until its absolute expiry
-- plus KEEP. Relative to the caller's clock, so that it holds whatever the server's says.
local function keep_for(key, now)
  local ttl = tonumber(redis.call('HGET', key, 'ax')) + KEEP - now
  if ttl < 1 then
    ttl = 1
  end
  return ttl
end

-- Appends `change` (a JSON object) to the route's log as `<seq>:<at>:<change>`.
local function append(log, logseq, change)
  local seq = redis.call('INCR', logseq)
  local at = redis.call('TIME')[1]
  redis.call('ZADD', log, seq, string.format('%d:%s:%s', seq, at, change))
end

-- The JSON object `json` with the field `name` set to `digits`, an integer as sessiond wrote
-- it (decimal text: exact, where cjson would round a Lua number to 14 digits). `json` as it
-- is if `digits` is not an integer (a field that is absent).
local function with_int(json, name, digits)
  if type(digits) ~= 'string' or not string.match(digits, '^%-?%d+$') then
    return json
  end
  return string.sub(json, 1, -2) .. ',"' .. name .. '":' .. digits .. '}'
end

-- Revokes the (active) session at `key`, takes it out of the route's timeouts and appends
-- the change to the route's log, with the session's auth_time.
local function revoke(key, sid, reason, now, log, logseq, timeouts)
  redis.call('HSET', key, 'st', 'r', 'sr', reason, 'sa', now)
  redis.call('ZREM', timeouts, sid)
  local f = redis.call('HMGET', key, 't', 'u', 'au', 'ca')
  local change = cjson.encode({
    kind = 'session_ended', tenant = f[1], session = sid, user = f[2], reason = reason
  })
  append(log, logseq, with_int(change, 'auth_time', f[3] or f[4]))
end

-- Records the timeout of the session at `key` (stored as active, no longer active at `now`),
-- takes it out of the route's timeouts and appends the change to the route's log, with the
-- session's auth_time and whether the idle timeout came first.
local function expire(key, sid, now, log, logseq, timeouts)
  local timeout, idle = timeout_of(key)
  local f = redis.call('HMGET', key, 't', 'u', 'au', 'ca')
  local change = cjson.encode({
    kind = 'session_expired', tenant = f[1], session = sid, user = f[2], idle = idle
  })
  change = with_int(with_int(change, 'auth_time', f[3] or f[4]), 'timed_out_at',
    string.format('%d', timeout))
  -- The entry is built before anything is written: a script that fails writes nothing.
  redis.call('HSET', key, 'st', 'e', 'sa', now)
  redis.call('ZREM', timeouts, sid)
  append(log, logseq, change)
end
