-- KEYS: presented token, successor token, log, logseq, timeouts
-- ARGV: base, tenant, now, grace, successor hex, successor expiry, sealed successor,
--       channel, route.
-- Rotation::step (model.rs), ported. Returns {'invalid'} | {'conflict'} |
-- {'inactive', sid, session} | {'rotated', sid, session} |
-- {'replayed', sid, session, sealed} | {'reused', sid, session, revoked 0|1}.
local presented, successor, log, logseq, timeouts = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local base, tenant, now, grace = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])

local rt = redis.call('HMGET', presented, 't', 's', 'x', 'ra', 'rs', 'rz')
if not rt[1] then
  return {'invalid'}
end
local sid = rt[2]
local skey = base .. 's:' .. sid
local owner = redis.call('HGET', skey, 't')
if not owner then
  return {'invalid'}
end
if rt[1] ~= tenant or owner ~= tenant then
  return {'invalid'}
end
if not active_at(skey, now) then
  return {'inactive', sid, redis.call('HGETALL', skey)}
end

if not rt[4] then
  if now >= tonumber(rt[3]) then
    return {'invalid'}
  end
  if redis.call('EXISTS', successor) == 1 then
    return {'conflict'}
  end
  redis.call('HSET', successor, 't', tenant, 's', sid, 'x', ARGV[6])
  redis.call('EXPIRE', successor, keep_for(skey, now))
  redis.call('HSET', presented, 'ra', ARGV[3], 'rs', ARGV[5], 'rz', ARGV[7])
  if tonumber(redis.call('HGET', skey, 'ls')) < now then
    redis.call('HSET', skey, 'ls', ARGV[3])
    schedule(timeouts, skey, sid)
  end
  return {'rotated', sid, redis.call('HGETALL', skey)}
end

-- This very rotation again (the successor is fresh per request): the client library re-sent
-- the script after a connection broke before its answer arrived. Answer as the first time.
if rt[5] == ARGV[5] then
  return {'rotated', sid, redis.call('HGETALL', skey)}
end

local current = false
if rt[5] then
  local next_key = base .. 'rt:' .. rt[5]
  current = redis.call('EXISTS', next_key) == 1 and redis.call('HEXISTS', next_key, 'ra') == 0
end
if current and now - tonumber(rt[4]) < grace then
  return {'replayed', sid, redis.call('HGETALL', skey), rt[6]}
end

local revoked = 0
if active_at(skey, now) then
  revoke(skey, sid, 'reuse_detected', ARGV[3], log, logseq, timeouts)
  redis.call('PUBLISH', ARGV[8], ARGV[9])
  revoked = 1
end
return {'reused', sid, redis.call('HGETALL', skey), revoked}
