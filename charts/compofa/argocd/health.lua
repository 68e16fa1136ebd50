-- Argo CD health check of the compofa.io resources: SupernetTraining, DeploymentTarget and
-- LatencyProfile (one script for all three; see README.md of the chart for argocd-cm).
--
-- A status written for an older spec (status.observedGeneration, or the Ready condition's
-- observedGeneration, below metadata.generation) or no status at all is Progressing: the operator
-- has not looked at the current spec yet. Then status.phase decides; a phase this script does not
-- know (a newer operator) falls back on the Ready condition, so that new phases or conditions never
-- turn a working resource Degraded. Only base and table functions are used: Argo CD runs custom
-- health checks without Lua's string, os or io libraries.

local hs = {}

local function readyCondition(status)
  if status.conditions == nil then
    return nil
  end
  for _, condition in ipairs(status.conditions) do
    if condition.type == "Ready" then
      return condition
    end
  end
  return nil
end

-- The Ready condition's message, else the given text.
local function explain(ready, otherwise)
  if ready ~= nil and ready.message ~= nil and ready.message ~= "" then
    return ready.message
  end
  return otherwise
end

local phases = {
  SupernetTraining = {
    Pending = "Progressing",
    Training = "Progressing",
    Evaluating = "Progressing",
    Succeeded = "Healthy",
    Failed = "Degraded",
    Suspended = "Suspended",
  },
  DeploymentTarget = {
    Pending = "Progressing",
    Profiling = "Progressing",
    Selecting = "Progressing",
    Extracting = "Progressing",
    Deploying = "Progressing",
    Ready = "Healthy",
    Degraded = "Degraded",
    Failed = "Degraded",
  },
  LatencyProfile = {
    Pending = "Progressing",
    Profiling = "Progressing",
    Ready = "Healthy",
    Failed = "Degraded",
  },
}

local generation = 0
if obj.metadata ~= nil and obj.metadata.generation ~= nil then
  generation = obj.metadata.generation
end
local status = obj.status

if status == nil or status.observedGeneration == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to report status"
  return hs
end
if status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. generation
    .. " (status is for generation " .. status.observedGeneration .. ")"
  return hs
end

local ready = readyCondition(status)
if ready ~= nil and ready.observedGeneration ~= nil and ready.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. generation
  return hs
end

local phase = status.phase
local known = phases[obj.kind]
local mapped = nil
if known ~= nil and phase ~= nil then
  mapped = known[phase]
end

if mapped ~= nil then
  hs.status = mapped
  if mapped == "Healthy" then
    hs.message = explain(ready, phase)
  else
    hs.message = phase .. ": " .. explain(ready, "no Ready condition yet")
  end
  return hs
end

-- No phase, or one this script does not know: the Ready condition alone.
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = explain(ready, "Ready")
  return hs
end
hs.status = "Progressing"
if phase ~= nil then
  hs.message = phase .. ": " .. explain(ready, "no Ready condition yet")
else
  hs.message = explain(ready, "Waiting for the operator to report a phase")
end
return hs
