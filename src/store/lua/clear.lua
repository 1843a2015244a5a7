-- Lets every waiting and pre-queued fan go with one reason (the show sold
-- out or closed), in one step; active sessions run on.
-- KEYS: 1 version, 2 waiting, 3 prequeue, 4 entries, 5 ended, 6 epoch, 7 tally,
--       8 active, 9 the demand ranking
-- ARGV: 1 reason, 2 show, 3 channel, 4 ended_retention_ms
-- Returns {cleared, changes_json|false}
local fans = redis.call('ZRANGE', KEYS[2], 0, -1)
local pre = redis.call('ZRANGE', KEYS[3], 0, -1)
for _, user in ipairs(pre) do
  fans[#fans + 1] = user
end
if #fans == 0 then
  return {0, false}
end
-- In batches: one call per 500 fans, not one per fan.
for i = 1, #fans, 500 do
  local gone, ended = {}, {}
  for j = i, math.min(i + 499, #fans) do
    gone[#gone + 1] = fans[j]
    ended[#ended + 1] = fans[j]
    ended[#ended + 1] = ARGV[1]
  end
  redis.call('HDEL', KEYS[4], unpack(gone))
  redis.call('HSET', KEYS[5], unpack(ended))
end
redis.call('DEL', KEYS[2], KEYS[3])
redis.call('PEXPIRE', KEYS[5], ARGV[4])
redis.call('HINCRBY', KEYS[7], ARGV[1], #fans)
rank_demand(KEYS[9], ARGV[2], KEYS[2], KEYS[3], KEYS[8])
local v = redis.call('INCR', KEYS[1])
local msg = encode({show = tonumber(ARGV[2]), e = epoch_of(KEYS[6]), changes = {{
  v = v, k = 'c', r = ARGV[1]}}})
redis.call('PUBLISH', ARGV[3], msg)
return {#fans, msg}
