-- A fan's entry, or else how their last spot ended, in one call: the
-- session check of every hold and payment.
-- KEYS: 1 entries, 2 ended. ARGV: 1 user
-- Returns {entry or nil, reason or nil}
local entry = redis.call('HGET', KEYS[1], ARGV[1])
if entry then
  return {entry, false}
end
return {false, redis.call('HGET', KEYS[2], ARGV[1])}
