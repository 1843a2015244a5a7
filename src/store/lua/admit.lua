-- Moves fans from the head of the waiting line to active until `capacity`
-- are active. Atomic: never above capacity, nobody twice.
-- KEYS: 1 version, 2 waiting, 3 active (zset user->until), 4 entries
-- ARGV: 1 capacity, 2 ttl_ms, 3 now_ms, 4 show, 5 channel, 6 freed_ms (when the
-- slot was freed; carried in the changes for the activation latency metric)
-- Returns changes_json, or false when nobody was admitted.
local capacity = tonumber(ARGV[1])
local till = tonumber(ARGV[3]) + tonumber(ARGV[2])
local active = redis.call('ZCARD', KEYS[3])
local changes = {}
while active < capacity do
  local head = redis.call('ZPOPMIN', KEYS[2])
  if #head == 0 then
    break
  end
  local user, seq = head[1], tonumber(head[2])
  redis.call('ZADD', KEYS[3], till, user)
  redis.call('HSET', KEYS[4], user, 'a:' .. seq .. ':' .. till)
  local v = redis.call('INCR', KEYS[1])
  changes[#changes + 1] = {v = v, k = 'a', u = tonumber(user), seq = seq, t = till, f = tonumber(ARGV[6])}
  active = active + 1
end
if #changes == 0 then
  return false
end
local msg = cjson.encode({show = tonumber(ARGV[4]), changes = changes})
redis.call('PUBLISH', ARGV[5], msg)
return msg
