-- KEYS: user index, log, logseq, timeouts
-- ARGV: base, tenant, reason, now, kept session id ('' for none), channel, route, user id.
-- Returns {{sid, session}...}: the sessions this call revoked. Without a kept session, a call
-- that revoked any logs the user's cut-off after them.
local index = KEYS[1]
local base, tenant, reason, now, keep = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5]
local result = {}
for _, id in ipairs(redis.call('ZRANGE', index, 0, -1)) do
  local k = base .. 's:' .. id
  if redis.call('EXISTS', k) == 0 then
    redis.call('ZREM', index, id)
  elseif id ~= keep and redis.call('HGET', k, 't') == tenant and active_at(k, now) then
    revoke(k, id, reason, ARGV[4], KEYS[2], KEYS[3], KEYS[4])
    result[#result + 1] = {id, redis.call('HGETALL', k)}
  end
end
if #result > 0 then
  if keep == '' then
    local change = cjson.encode({
      kind = 'user_sessions_ended', tenant = tenant, user = ARGV[8], reason = reason
    })
    append(KEYS[2], KEYS[3], with_int(change, 'before', ARGV[4]))
  end
  redis.call('PUBLISH', ARGV[6], ARGV[7])
end
return result
