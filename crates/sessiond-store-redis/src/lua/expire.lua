-- KEYS: timeouts, log, logseq. ARGV: base, now, limit, channel, route.
-- The sweep of one route: records the timeouts of the sessions scored at or before `now`
-- (at most `limit` members looked at), each checked against its record, since a score may
-- be stale: a session no longer active in state (or gone) leaves the zset, one still active
-- is rescored. Returns {members looked at, {sid, session}...}: the sessions it recorded.
local timeouts, log, logseq = KEYS[1], KEYS[2], KEYS[3]
local base, now = ARGV[1], tonumber(ARGV[2])
local due = redis.call('ZRANGEBYSCORE', timeouts, '-inf', ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
local result = {#due}
for _, id in ipairs(due) do
  local k = base .. 's:' .. id
  local st = redis.call('HGET', k, 'st')
  if st ~= 'a' then
    redis.call('ZREM', timeouts, id)
  elseif active_at(k, now) then
    schedule(timeouts, k, id)
  else
    expire(k, id, ARGV[2], log, logseq, timeouts)
    result[#result + 1] = {id, redis.call('HGETALL', k)}
  end
end
if #result > 1 then
  redis.call('PUBLISH', ARGV[4], ARGV[5])
end
return result
