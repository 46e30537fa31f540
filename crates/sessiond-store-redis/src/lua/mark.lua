-- KEYS: mark. ARGV: expected version ('' : no mark yet), body, call token.
-- Compare-and-swap of a mark (a hash: v version, b body, w token of the call that wrote it):
-- writes version expected + 1 (1 for a new mark) if the version is still `expected`; returns
-- the new version, or 0 if nothing was written. A call already applied and re-sent by the
-- client library (a connection broke before its answer) finds its own token on the next
-- version, and gets that version again.
local mark, body, token = KEYS[1], ARGV[2], ARGV[3]
local expected = 0
if ARGV[1] ~= '' then
  expected = tonumber(ARGV[1])
end
local held = redis.call('HMGET', mark, 'v', 'w')
local version = tonumber(held[1]) or 0
if version == expected + 1 and held[2] == token then
  return version
end
if version ~= expected then
  return 0
end
redis.call('HSET', mark, 'v', expected + 1, 'b', body, 'w', token)
return expected + 1
