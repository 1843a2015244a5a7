-- Ends a fan's entry if it matches the condition.
-- KEYS: 1 version, 2 waiting, 3 active, 4 entries, 5 ended, 6 epoch, 7 prequeue,
--       8 tally, 9 the demand ranking
-- ARGV: 1 user, 2 reason, 3 condition (any|session|stale), 4 condition arg
--       (session id | cutoff_ms), 5 show, 6 channel, 7 ended_retention_ms
-- Returns changes_json, or false when nothing matched.
local entry = redis.call('HGET', KEYS[4], ARGV[1])
if not entry then
  return false
end
-- waiting: w:seq:live:last_seen   active: a:session:until
local kind, a, b, c = string.match(entry, '^(%a):(%d+):(%d+):?(%d*)$')
local was_active = kind == 'a'
if ARGV[3] == 'session' then
  if not was_active or a ~= ARGV[4] then
    return false
  end
elseif ARGV[3] == 'stale' then
  if was_active or tonumber(b) ~= 0 or tonumber(c) > tonumber(ARGV[4]) then
    return false
  end
end
redis.call('HDEL', KEYS[4], ARGV[1])
if was_active then
  redis.call('ZREM', KEYS[3], ARGV[1])
else
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('ZREM', KEYS[7], ARGV[1])
end
redis.call('HSET', KEYS[5], ARGV[1], ARGV[2])
redis.call('HINCRBY', KEYS[8], ARGV[2], 1)
-- How spots ended is kept for status after the fact, not forever: the hash
-- lives until a retention period after the show's last removal.
redis.call('PEXPIRE', KEYS[5], ARGV[7])
rank_demand(KEYS[9], ARGV[5], KEYS[2], KEYS[7], KEYS[3])
local v = redis.call('INCR', KEYS[1])
local msg = encode({show = tonumber(ARGV[5]), e = epoch_of(KEYS[6]), changes = {{
  v = v, k = 'r', u = tonumber(ARGV[1]), seq = a, r = ARGV[2], wa = was_active}}})
redis.call('PUBLISH', ARGV[6], msg)
return msg
