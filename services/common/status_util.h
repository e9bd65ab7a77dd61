// Conversions between absl::Status (used everywhere inside longctx) and
// grpc::Status (used only at the edge of a gRPC service or client).
#ifndef LONGCTX_SERVICES_COMMON_STATUS_UTIL_H_
#define LONGCTX_SERVICES_COMMON_STATUS_UTIL_H_

#include "absl/status/status.h"
#include "grpcpp/support/status.h"

namespace longctx {

// ToGrpcStatus maps an absl::Status to the grpc::Status with the same code and
// message.
grpc::Status ToGrpcStatus(const absl::Status& status);

// FromGrpcStatus maps a grpc::Status back to an absl::Status (same code and
// message).
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace longctx

#endif  // LONGCTX_SERVICES_COMMON_STATUS_UTIL_H_
