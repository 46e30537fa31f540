-- KEYS: nonce. ARGV: expires_at, now.
-- 1 the first time (or once the previous record expired at `now`), else 0. The record is
-- kept `expires_at - now` seconds: relative to the caller's clock, like its expiry check.
local expires, now = tonumber(ARGV[1]), tonumber(ARGV[2])
local held = redis.call('GET', KEYS[1])
if held and tonumber(held) > now then
  return 0
end
if expires > now then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', expires - now)
else
  redis.call('DEL', KEYS[1])
end
return 1
