-- A node's lease: renew it, claiming every lapsed one; or release it.
-- KEYS: 1 leases (node → expiry_ms:since_ms), 2 lapsed (node → lapse_ms:claimer)
-- ARGV: 1 this node, 2 op (renew|release), 3 now_ms, 4 expiry_ms (renew),
--       5 create (renew: 1 to take a lease this node does not hold)
-- renew returns strings {present, claimed, node, lapse_ms, …}: whether this node's
-- lease was still there, how many lapsed leases it claimed now, and every
-- lapsed node this node is to reap (claimed now or earlier, or left by a
-- claimer that lapsed or stopped before it finished). release returns 0.
local me, now = ARGV[1], tonumber(ARGV[3])
if ARGV[2] == 'release' then
  -- Stopping: whatever this node's connections did not uncount on their
  -- way out is reaped by a survivor, as of now.
  redis.call('HDEL', KEYS[1], me)
  redis.call('HSET', KEYS[2], me, ARGV[3] .. ':')
  return 0
end
local held = redis.call('HGET', KEYS[1], me)
if not held and ARGV[5] ~= '1' then
  -- Claimed (or lost with the store's data): not taken again under this
  -- name, whose records a survivor reaps.
  return {'0', '0'}
end
local lease = tonumber(ARGV[4]) - now
local since = ARGV[3]
if held then
  local e, s = string.match(held, '^(%d+):(%d+)$')
  if e and tonumber(e) >= now then
    since = s
  end
end
-- A run of renewals starts when the lease is taken, or renewed after it
-- lapsed: this node could not renew either (an outage of the store that
-- every node lived through, or a stall of its own). It claims nobody for a
-- lease from then, so each node gets a full lease to renew before it is
-- taken for dead.
redis.call('HSET', KEYS[1], me, ARGV[4] .. ':' .. since)
local present = held and 1 or 0
local claimed = 0
if now >= tonumber(since) + lease then
  local leases = redis.call('HGETALL', KEYS[1])
  for i = 1, #leases, 2 do
    local until_ms = string.match(leases[i + 1], '^(%d+)')
    if until_ms and tonumber(until_ms) < now then
      redis.call('HDEL', KEYS[1], leases[i])
      redis.call('HSET', KEYS[2], leases[i], until_ms .. ':' .. me)
      claimed = claimed + 1
    end
  end
end
local out = {tostring(present), tostring(claimed)}
local lapsed = redis.call('HGETALL', KEYS[2])
for i = 1, #lapsed, 2 do
  local at, by = string.match(lapsed[i + 1], '^(%d+):(.*)$')
  if at and by ~= me and not redis.call('HGET', KEYS[1], by) then
    redis.call('HSET', KEYS[2], lapsed[i], at .. ':' .. me)
    by = me
  end
  if by == me then
    out[#out + 1] = lapsed[i]
    out[#out + 1] = at
  end
end
return out
