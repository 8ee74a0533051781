// Version of the kdhost plugin API. A plugin built against API X.Y loads into a host of API X.Z
// when Y <= Z; any change that breaks existing plugins bumps the major number.
#pragma once

#define KD_API_MAJOR 5
#define KD_API_MINOR 0
#define KD_VERSION_STRING "0.1.0"
