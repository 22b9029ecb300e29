// A session against the ECI emulator through the official Go SDKs, for tests/conformance.
//
//	-sdk classic: github.com/aliyun/alibaba-cloud-sdk-go (services/eci typed requests where it
//	              has them, CommonRequest for the rest), which signs RPC v1 (HMAC-SHA1), as the
//	              aliyun CLI and Terraform do.
//	-sdk tea:     github.com/alibabacloud-go/darabonba-openapi/v2, the client the generated
//	              eci-20180808 Go package calls: ACS3-HMAC-SHA256 by default, RPC v1 with
//	              -signature v2.
//
// -mode session runs the nine actions; -mode refusals sends a create with a wrong secret, one
// with a nonce already used and one dated 20 minutes ago. Each step prints one JSON line:
// {"step": ..., "ok": true, "value": ...} or {"step": ..., "ok": false, "status": N, "code": ...}.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"reflect"
	"strings"
	"time"
	_ "unsafe" // go:linkname: the SDK's own clock and nonce hooks

	openapi "github.com/alibabacloud-go/darabonba-openapi/v2/client"
	openapiutil "github.com/alibabacloud-go/darabonba-openapi/v2/utils"
	"github.com/alibabacloud-go/tea/dara"
	"github.com/aliyun/alibaba-cloud-sdk-go/sdk/errors"
	"github.com/aliyun/alibaba-cloud-sdk-go/sdk/requests"
	"github.com/aliyun/alibaba-cloud-sdk-go/services/eci"
	credential "github.com/aliyun/credentials-go/credentials"
)

// The classic SDK takes its Timestamp and SignatureNonce through these package hooks (its own
// tests replace them the same way): a refusal test signs a real request with an old date or a
// nonce already spent, and the SDK still computes the signature.
//
//go:linkname hookGetDate github.com/aliyun/alibaba-cloud-sdk-go/sdk/auth.hookGetDate
var hookGetDate func(fn func() string) string

//go:linkname hookGetNonce github.com/aliyun/alibaba-cloud-sdk-go/sdk/auth.hookGetNonce
var hookGetNonce func(fn func() string) string

const version = "2018-08-08"

var (
	endpoint  = flag.String("endpoint", "", "host:port of the emulator")
	keyID     = flag.String("key", "", "AccessKey id")
	secret    = flag.String("secret", "", "AccessKey secret")
	region    = flag.String("region", "cn-hangzhou", "region")
	image     = flag.String("image", "", "an image reference the emulator's registry holds")
	sdkName   = flag.String("sdk", "classic", "classic or tea")
	signature = flag.String("signature", "", "tea only: empty for ACS3, v2 for RPC v1")
	mode      = flag.String("mode", "session", "session or refusals")
	format    = flag.String("format", "JSON", "classic only: JSON or XML answers")
	failed    = false
)

func emit(step string, value interface{}, err error) {
	line := map[string]interface{}{"step": step, "ok": err == nil}
	if err == nil {
		line["value"] = value
	} else {
		failed = true
		line["error"] = err.Error()
		if e, ok := err.(*errors.ServerError); ok { // the classic SDK
			line["status"], line["code"] = e.HttpStatus(), e.ErrorCode()
		} else { // the darabonba client's errors (tea.SDKError and others): same fields
			v := reflect.Indirect(reflect.ValueOf(err))
			if v.Kind() == reflect.Struct {
				if f := v.FieldByName("StatusCode"); f.IsValid() && !f.IsNil() {
					line["status"] = f.Elem().Interface()
				}
				if f := v.FieldByName("Code"); f.IsValid() && !f.IsNil() {
					line["code"] = f.Elem().Interface()
				}
			}
		}
	}
	out, _ := json.Marshal(line)
	fmt.Println(string(out))
}

// api is one SDK's way of calling an action with (unflattened) parameters.
type api interface {
	call(action string, params map[string]interface{}) (map[string]interface{}, error)
}

// ---- the classic SDK ----------------------------------------------------------------------

type classic struct {
	client *eci.Client
}

func newClassic(secret string) *classic {
	client, err := eci.NewClientWithAccessKey(*region, *keyID, secret)
	if err != nil {
		panic(err)
	}
	return &classic{client}
}

func (c *classic) prepare(r *requests.RpcRequest) {
	r.Domain = *endpoint
	r.Scheme = "http"
	r.AcceptFormat = *format
}

func asMap(v interface{}) map[string]interface{} {
	raw, _ := json.Marshal(v)
	out := map[string]interface{}{}
	_ = json.Unmarshal(raw, &out)
	return out
}

// call sends the typed request where the Go SDK has one, else a CommonRequest (the same RPC
// signing; the aliyun CLI works this way), with the parameters flattened as RPC expects.
func (c *classic) call(action string, params map[string]interface{}) (map[string]interface{}, error) {
	switch action {
	case "CreateImageCache":
		r := eci.CreateCreateImageCacheRequest()
		c.prepare(r.RpcRequest)
		r.RegionId, r.ImageCacheName = *region, params["ImageCacheName"].(string)
		r.Image = []string{params["Image"].([]interface{})[0].(string)}
		r.ClientToken = params["ClientToken"].(string)
		resp, err := c.client.CreateImageCache(r)
		return asMap(resp), err
	case "DescribeImageCaches":
		r := eci.CreateDescribeImageCachesRequest()
		c.prepare(r.RpcRequest)
		r.RegionId, r.ImageCacheId = *region, params["ImageCacheId"].(string)
		resp, err := c.client.DescribeImageCaches(r)
		return asMap(resp), err
	case "DeleteImageCache":
		r := eci.CreateDeleteImageCacheRequest()
		c.prepare(r.RpcRequest)
		r.RegionId, r.ImageCacheId = *region, params["ImageCacheId"].(string)
		resp, err := c.client.DeleteImageCache(r)
		return asMap(resp), err
	case "CreateContainerGroup":
		r := eci.CreateCreateContainerGroupRequest()
		c.prepare(r.RpcRequest)
		r.RegionId, r.ContainerGroupName = *region, params["ContainerGroupName"].(string)
		r.Cpu, r.Memory = requests.NewFloat(1), requests.NewFloat(2)
		r.Tag = &[]eci.CreateContainerGroupTag{{Key: "team", Value: "go"}}
		r.Container = &[]eci.CreateContainerGroupContainer{{
			Name:           "web",
			Image:          *image,
			EnvironmentVar: &[]eci.CreateContainerGroupEnvironmentVar{{Key: "GREETING", Value: "hello world"}},
			Port:           &[]eci.CreateContainerGroupPort{{Port: requests.NewInteger(80), Protocol: "TCP"}},
		}}
		resp, err := c.client.CreateContainerGroup(r)
		return asMap(resp), err
	case "DescribeContainerGroups":
		r := eci.CreateDescribeContainerGroupsRequest()
		c.prepare(r.RpcRequest)
		r.RegionId, r.ContainerGroupIds = *region, params["ContainerGroupIds"].(string)
		resp, err := c.client.DescribeContainerGroups(r)
		return asMap(resp), err
	case "DeleteContainerGroup":
		r := eci.CreateDeleteContainerGroupRequest()
		c.prepare(r.RpcRequest)
		r.RegionId, r.ContainerGroupId = *region, params["ContainerGroupId"].(string)
		resp, err := c.client.DeleteContainerGroup(r)
		return asMap(resp), err
	}
	r := requests.NewCommonRequest()
	r.Domain, r.Scheme, r.Version, r.ApiName = *endpoint, "http", version, action
	r.Product = "Eci"
	r.AcceptFormat = *format
	r.QueryParams["RegionId"] = *region
	for k, v := range openapiutil.Query(params) {
		r.QueryParams[k] = dara.StringValue(v)
	}
	resp, err := c.client.ProcessCommonRequest(r)
	if err != nil {
		return nil, err
	}
	out := map[string]interface{}{}
	if strings.ToUpper(*format) == "XML" { // no typed response to read it into: kept as text
		out["xml"] = resp.GetHttpContentString()
		return out, nil
	}
	err = json.Unmarshal(resp.GetHttpContentBytes(), &out)
	return out, err
}

// ---- the Tea (darabonba) OpenAPI client ---------------------------------------------------

type tea struct {
	client *openapi.Client
}

func newTea(secret string) *tea {
	cred, err := credential.NewCredential(new(credential.Config).
		SetType("access_key").SetAccessKeyId(*keyID).SetAccessKeySecret(secret))
	if err != nil {
		panic(err)
	}
	config := &openapi.Config{
		Credential: cred, Endpoint: dara.String(*endpoint), Protocol: dara.String("http"),
		RegionId: dara.String(*region),
	}
	if *signature != "" {
		config.SignatureAlgorithm = dara.String(*signature)
	}
	client, err := openapi.NewClient(config)
	if err != nil {
		panic(err)
	}
	return &tea{client}
}

// call is what each method of the generated eci-20180808 client does: flatten the request
// into the query (openapiutil.Query), then CallApi with the action's RPC parameters.
func (t *tea) call(action string, params map[string]interface{}) (map[string]interface{}, error) {
	params["RegionId"] = *region
	request := &openapiutil.OpenApiRequest{Query: openapiutil.Query(params)}
	api := &openapiutil.Params{
		Action: dara.String(action), Version: dara.String(version), Protocol: dara.String("HTTP"),
		Pathname: dara.String("/"), Method: dara.String("POST"), AuthType: dara.String("AK"),
		Style: dara.String("RPC"), ReqBodyType: dara.String("formData"), BodyType: dara.String("json"),
	}
	result, err := t.client.CallApi(api, request, &dara.RuntimeOptions{})
	if err != nil {
		return nil, err
	}
	body, _ := result["body"].(map[string]interface{})
	return body, nil
}

// ---- the steps ------------------------------------------------------------------------------

func str(m map[string]interface{}, key string) string {
	s, _ := m[key].(string)
	return s
}

func waitForCache(c api, id string) (map[string]interface{}, error) {
	deadline := time.Now().Add(60 * time.Second)
	for {
		got, err := c.call("DescribeImageCaches", map[string]interface{}{"ImageCacheId": id})
		if err != nil {
			return nil, err
		}
		caches, _ := got["ImageCaches"].([]interface{})
		if len(caches) == 1 {
			cache := caches[0].(map[string]interface{})
			if s := str(cache, "Status"); s == "Ready" || s == "Failed" || time.Now().After(deadline) {
				return cache, nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func session(c api, label string) {
	made, err := c.call("CreateImageCache", map[string]interface{}{
		"ImageCacheName": label, "Image": []interface{}{*image}, "ClientToken": label + "-token",
	})
	emit("CreateImageCache", made, err)
	if err != nil {
		return
	}
	id := str(made, "ImageCacheId")
	cache, err := waitForCache(c, id)
	emit("DescribeImageCaches", cache, err)
	updated, err := c.call("UpdateImageCache", map[string]interface{}{
		"ImageCacheId": id, "ImageCacheName": label + "-renamed", "Image": []interface{}{*image},
	})
	emit("UpdateImageCache", updated, err)
	cache, err = waitForCache(c, id)
	emit("DescribeImageCaches", cache, err)
	usage, err := c.call("ListUsage", map[string]interface{}{})
	emit("ListUsage", usage, err)
	group, err := c.call("CreateContainerGroup", map[string]interface{}{
		"ContainerGroupName": label + "-group", "Cpu": 1, "Memory": 2,
		"Tag": []interface{}{map[string]interface{}{"Key": "team", "Value": "go"}},
		"Container": []interface{}{map[string]interface{}{
			"Name": "web", "Image": *image,
			"EnvironmentVar": []interface{}{map[string]interface{}{"Key": "GREETING", "Value": "hello world"}},
			"Port":           []interface{}{map[string]interface{}{"Port": 80, "Protocol": "TCP"}},
		}},
	})
	emit("CreateContainerGroup", group, err)
	if err != nil {
		return
	}
	gid := str(group, "ContainerGroupId")
	ids, _ := json.Marshal([]string{gid})
	groups, err := c.call("DescribeContainerGroups", map[string]interface{}{"ContainerGroupIds": string(ids)})
	emit("DescribeContainerGroups", groups, err)
	events, err := c.call("DescribeContainerGroupEvents", map[string]interface{}{"ContainerGroupIds": string(ids)})
	emit("DescribeContainerGroupEvents", events, err)
	deleted, err := c.call("DeleteContainerGroup", map[string]interface{}{"ContainerGroupId": gid})
	emit("DeleteContainerGroup", deleted, err)
	deleted, err = c.call("DeleteImageCache", map[string]interface{}{"ImageCacheId": id})
	emit("DeleteImageCache", deleted, err)
}

func create(c api, name string) error {
	_, err := c.call("CreateImageCache", map[string]interface{}{
		"ImageCacheName": name, "Image": []interface{}{*image}, "ClientToken": name,
	})
	return err
}

// refusals: each should fail with the gateway's code; the test reads the emulator's state.
func refusals(make func(secret string) api) {
	emit("wrong-secret", nil, create(make(*secret+"x"), "wrong-secret"))
	good := make(*secret)
	if *sdkName == "classic" {
		hookGetNonce = func(func() string) string { return "go-fixed-nonce-" + *signature + "1" }
		emit("first-use-of-nonce", nil, create(good, "first-use"))
		emit("replayed-nonce", nil, create(good, "replayed"))
		hookGetNonce = func(fn func() string) string { return fn() }
		old := time.Now().UTC().Add(-20 * time.Minute).Format("2006-01-02T15:04:05Z")
		hookGetDate = func(func() string) string { return old }
		emit("old-timestamp", nil, create(good, "old-timestamp"))
		hookGetDate = func(fn func() string) string { return fn() }
	}
}

func main() {
	flag.Parse()
	label := "go-" + *sdkName + strings.ReplaceAll("-"+*signature, "-v2", "-v1")
	label = strings.TrimSuffix(label, "-")
	make := func(secret string) api {
		if *sdkName == "tea" {
			return newTea(secret)
		}
		return newClassic(secret)
	}
	switch *mode {
	case "session":
		session(make(*secret), label)
		if failed {
			os.Exit(1)
		}
	case "refusals":
		refusals(make)
	default:
		fmt.Fprintln(os.Stderr, "unknown -mode")
		os.Exit(2)
	}
}
