-- KEYS: the tenant's session index. ARGV: created_at, session id, 'nx' | 'rescore'.
-- Adds the session after every member of the index created in the same second (see
-- index_score); with 'nx' only if it is not a member yet. Returns 1 if it scored it, else 0.
local index, sid = KEYS[1], ARGV[2]
if ARGV[3] == 'nx' and redis.call('ZSCORE', index, sid) then
  return 0
end
redis.call('ZADD', index, index_score(index, tonumber(ARGV[1])), sid)
return 1
