-- The opening (QueueStore::open): every pre-queued fan moves to the head of
-- the line in a uniformly random order, in this one step; later pre-queue
-- joins go to the line. Fisher-Yates with the caller's random draws (below
-- 2^40, so `%` on Lua's doubles is exact), the same steps as `shuffle` in
-- src/store/mod.rs: the fans keep their spots, and take the pre-queue's join
-- sequence numbers, shuffled, as their positions.
-- KEYS: 1 seq, 2 version, 3 waiting, 4 prequeue, 5 epoch
-- ARGV: 1 show, 2 channel, then the draws
-- Returns {opened, need_draws (0|1), changes_json|false}
local n = redis.call('ZCARD', KEYS[4])
if #ARGV - 2 < n then
  return {n, 1, false}
end
local epoch = epoch_init(KEYS[5], KEYS[1])
redis.call('HSET', KEYS[5], 'opened', 1)
if n == 0 then
  return {0, 0, false}
end
local pre = redis.call('ZRANGE', KEYS[4], 0, -1, 'WITHSCORES')
local fans, positions = {}, {}
for i = 1, #pre, 2 do
  fans[#fans + 1] = pre[i]
  positions[#positions + 1] = pre[i + 1]
end
local k = 3
for i = n - 1, 1, -1 do
  local j = tonumber(ARGV[k]) % (i + 1)
  k = k + 1
  fans[i + 1], fans[j + 1] = fans[j + 1], fans[i + 1]
end
local order = {}
-- ZADD in batches: one call per 500 fans, not one per fan.
local batch = {}
for i = 1, n do
  batch[#batch + 1] = positions[i]
  batch[#batch + 1] = fans[i]
  if #batch == 1000 or i == n then
    redis.call('ZADD', KEYS[3], unpack(batch))
    batch = {}
  end
  order[i] = '[' .. fans[i] .. ',' .. positions[i] .. ']'
end
redis.call('DEL', KEYS[4])
local v = redis.call('INCR', KEYS[2])
local msg = '{"show":' .. ARGV[1] .. ',"e":' .. int(epoch) .. ',"changes":[{"v":' .. v
  .. ',"k":"o","o":[' .. table.concat(order, ',') .. ']}]}'
redis.call('PUBLISH', ARGV[2], msg)
return {n, 0, msg}
