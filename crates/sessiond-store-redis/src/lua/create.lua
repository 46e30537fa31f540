-- KEYS: session, user index, log, logseq, timeouts[, refresh token]
-- ARGV: base, now, limit kind (u|e|r), limit, session id, channel, route,
--       refresh expiry, then the session's fields as name, value pairs.
-- Returns {'ok', evicted ids...} | {'conflict'} | {'limit'}.
local skey, index, log, logseq, timeouts = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local rkey = KEYS[6]
local base, now, kind, limit = ARGV[1], tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
local sid = ARGV[5]

if redis.call('EXISTS', skey) == 1 then
  -- The same record already there: this create again, re-sent by the client library after a
  -- connection broke before its answer arrived. Done (what it evicted is in the log).
  local same = true
  for i = 9, #ARGV - 1, 2 do
    if redis.call('HGET', skey, ARGV[i]) ~= ARGV[i + 1] then
      same = false
      break
    end
  end
  if same then
    return {'ok'}
  end
  return {'conflict'}
end
if rkey and redis.call('EXISTS', rkey) == 1 then
  return {'conflict'}
end

-- Under a limit: the user's active sessions, oldest first; members whose session is gone are
-- pruned. Without one there is nothing to count, and a login must not cost more for a user
-- with thousands of sessions (a script blocks the whole Redis): only the four oldest members
-- and four picked at random are looked at, and pruned if their record is gone. Records mostly
-- go in the order they were made (each is kept until a day after its absolute expiry); the
-- random ones find those that do not (a tenant's lifetime shortened, keys evicted): each
-- login removes about four times the index's share of gone members, so they stay under about
-- a quarter of it however long the user keeps logging in.
local active = {}
if kind == 'u' then
  local look = redis.call('ZRANGE', index, 0, 3)
  for _, id in ipairs(redis.call('ZRANDMEMBER', index, 4)) do
    look[#look + 1] = id
  end
  for _, id in ipairs(look) do
    if redis.call('EXISTS', base .. 's:' .. id) == 0 then
      redis.call('ZREM', index, id)
    end
  end
else
  for _, id in ipairs(redis.call('ZRANGE', index, 0, -1)) do
    local k = base .. 's:' .. id
    if redis.call('EXISTS', k) == 0 then
      redis.call('ZREM', index, id)
    elseif active_at(k, now) then
      active[#active + 1] = id
    end
  end
end

local evict = 0
if kind == 'r' and #active >= limit then
  return {'limit'}
elseif kind == 'e' then
  evict = #active + 1 - math.max(limit, 1)
end

local result = {'ok'}
for i = 1, evict do
  local id = active[i]
  revoke(base .. 's:' .. id, id, 'displaced', ARGV[2], log, logseq, timeouts)
  result[#result + 1] = id
end
if evict > 0 then
  redis.call('PUBLISH', ARGV[6], ARGV[7])
end

local fields = {}
for i = 9, #ARGV do
  fields[#fields + 1] = ARGV[i]
end
redis.call('HSET', skey, unpack(fields))
local ttl = keep_for(skey, now)
redis.call('EXPIRE', skey, ttl)
schedule(timeouts, skey, sid)
redis.call('ZADD', index, index_score(index, tonumber(redis.call('HGET', skey, 'ca'))), sid)
if redis.call('TTL', index) < ttl then
  redis.call('EXPIRE', index, ttl)
end
if rkey then
  redis.call('HSET', rkey, 't', redis.call('HGET', skey, 't'), 's', sid, 'x', ARGV[8])
  redis.call('EXPIRE', rkey, ttl)
end
return result
