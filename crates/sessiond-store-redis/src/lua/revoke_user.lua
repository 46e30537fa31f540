-- KEYS: user index, log, logseq
-- ARGV: base, tenant, reason, now, kept session id ('' for none), channel, route.
-- Returns {{sid, session}...}: the sessions this call revoked.
local index = KEYS[1]
local base, tenant, reason, now, keep = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5]
local result = {}
for _, id in ipairs(redis.call('ZRANGE', index, 0, -1)) do
  local k = base .. 's:' .. id
  if redis.call('EXISTS', k) == 0 then
    redis.call('ZREM', index, id)
  elseif id ~= keep and redis.call('HGET', k, 't') == tenant and active_at(k, now) then
    revoke(k, id, reason, ARGV[4], KEYS[2], KEYS[3])
    result[#result + 1] = {id, redis.call('HGETALL', k)}
  end
end
if #result > 0 then
  redis.call('PUBLISH', ARGV[6], ARGV[7])
end
return result
