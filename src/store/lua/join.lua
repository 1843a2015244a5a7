-- Appends a fan to the waiting line (or the pre-queue), or returns the spot
-- they hold.
-- KEYS: 1 seq, 2 version, 3 waiting (zset position->user), 4 entries (hash),
--       5 ended (hash), 6 epoch, 7 prequeue (zset seq->user)
-- ARGV: 1 user, 2 now_ms, 3 show, 4 channel, 5 mode (line|prequeue)
-- Returns {created (0|1), entry, changes_json|false}
-- A pre-queue join after the opening (a node whose clock is a moment behind)
-- goes to the line.
local existing = redis.call('HGET', KEYS[4], ARGV[1])
if existing then
  return {0, existing, false}
end
local epoch = epoch_init(KEYS[6], KEYS[1])
local seq = int(redis.call('INCR', KEYS[1]))
local prequeued = ARGV[5] == 'prequeue' and not redis.call('HGET', KEYS[6], 'opened')
if prequeued then
  redis.call('ZADD', KEYS[7], seq, ARGV[1])
else
  redis.call('ZADD', KEYS[3], seq, ARGV[1])
end
local entry = 'w:' .. seq .. ':0:' .. ARGV[2]
redis.call('HSET', KEYS[4], ARGV[1], entry)
redis.call('HDEL', KEYS[5], ARGV[1])
local v = redis.call('INCR', KEYS[2])
local msg = encode({show = tonumber(ARGV[3]), e = epoch, changes = {{
  v = v, k = 'j', u = tonumber(ARGV[1]), seq = seq, q = prequeued and 1 or 0}}})
redis.call('PUBLISH', ARGV[4], msg)
return {1, entry, msg}
