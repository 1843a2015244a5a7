-- Moves fans from the head of the waiting line to active until `capacity`
-- are active. Atomic: never above capacity, nobody twice.
-- KEYS: 1 version, 2 waiting, 3 active (zset user->until), 4 entries, 5 epoch
-- ARGV: 1 capacity, 2 ttl_ms, 3 now_ms, 4 show, 5 channel, 6 freed_ms (when the
-- slot was freed; carried in the changes for the activation latency metric),
-- 7 the epoch the caller knows (0: none)
-- Returns {epoch, changes_json|false}. Admits nobody when the store's epoch is
-- not the caller's (the caller rebuilds first), or while a rebuild holds
-- admission.
local epoch = epoch_of(KEYS[5])
if ARGV[7] ~= '0' and tonumber(ARGV[7]) ~= epoch then
  return {int(epoch), false}
end
local hold = redis.call('HGET', KEYS[5], 'hold_until')
if hold and tonumber(hold) > tonumber(ARGV[3]) then
  return {int(epoch), false}
end
local capacity = tonumber(ARGV[1])
local till = tonumber(ARGV[3]) + tonumber(ARGV[2])
local active = redis.call('ZCARD', KEYS[3])
local changes = {}
while active < capacity do
  local head = redis.call('ZPOPMIN', KEYS[2])
  if #head == 0 then
    break
  end
  -- The score as Redis writes it: exact (16 digits).
  local user, seq = head[1], head[2]
  redis.call('ZADD', KEYS[3], till, user)
  redis.call('HSET', KEYS[4], user, 'a:' .. seq .. ':' .. till)
  local v = redis.call('INCR', KEYS[1])
  changes[#changes + 1] = {v = v, k = 'a', u = tonumber(user), seq = seq, t = till, f = tonumber(ARGV[6])}
  active = active + 1
end
if #changes == 0 then
  return {int(epoch), false}
end
local msg = encode({show = tonumber(ARGV[4]), e = epoch, changes = changes})
redis.call('PUBLISH', ARGV[5], msg)
return {int(epoch), msg}
