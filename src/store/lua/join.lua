-- Appends a fan to the waiting line, or returns the spot they hold.
-- KEYS: 1 seq, 2 version, 3 waiting (zset seq->user), 4 entries (hash), 5 ended (hash),
--       6 epoch
-- ARGV: 1 user, 2 now_ms, 3 show, 4 channel
-- Returns {created (0|1), entry, changes_json|false}
local existing = redis.call('HGET', KEYS[4], ARGV[1])
if existing then
  return {0, existing, false}
end
local epoch = epoch_init(KEYS[6], KEYS[1])
local seq = int(redis.call('INCR', KEYS[1]))
redis.call('ZADD', KEYS[3], seq, ARGV[1])
local entry = 'w:' .. seq .. ':0:' .. ARGV[2]
redis.call('HSET', KEYS[4], ARGV[1], entry)
redis.call('HDEL', KEYS[5], ARGV[1])
local v = redis.call('INCR', KEYS[2])
local msg = encode({show = tonumber(ARGV[3]), e = epoch, changes = {{v = v, k = 'j', u = tonumber(ARGV[1]), seq = seq}}})
redis.call('PUBLISH', ARGV[4], msg)
return {1, entry, msg}
