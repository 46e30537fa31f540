-- KEYS: an index. ARGV: cutoff, members...
-- Removes the members created before `cutoff` (a member created later may belong to a create
-- whose script has not run yet: its record is not there *yet*). Returns how many went.
local cutoff, n = tonumber(ARGV[1]), 0
for i = 2, #ARGV do
  local s = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if s and score_time(tonumber(s)) < cutoff then
    n = n + redis.call('ZREM', KEYS[1], ARGV[i])
  end
end
return n
